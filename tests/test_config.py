from pathlib import Path

import pytest

from varattn import config as config_lib
from varattn.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_round_trip_and_overrides(tmp_path):
    config = config_lib.Config()
    config.model.mode = "vae-enum"
    config_lib.save(config, tmp_path / "c.yaml")
    loaded = config_lib.load(tmp_path / "c.yaml", ["train.max_steps=20", "model.dropout=0", "data.dir=2024"])
    assert loaded.model.mode == "vae-enum"
    assert loaded.train.max_steps == 20 and loaded.model.dropout == 0.0 and loaded.data.dir == "2024"


@pytest.mark.parametrize("text, needle", [
    ("model:\n  hiden: 3\n", "unknown key model.hiden"),
    ("modle:\n  mode: soft\n", "unknown section 'modle'"),
    ("model:\n  mode: fancy\n", "model.mode='fancy'"),
    ("model:\n  emb_size: big\n", "model.emb_size='big' should be int"),
    ("model: [\n", "not valid YAML"),
])
def test_bad_configs_are_one_line_errors(tmp_path, text, needle):
    with pytest.raises(UserError) as info:
        config_lib.load(write(tmp_path, text))
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_bad_override():
    with pytest.raises(UserError, match="unknown key train.maxsteps"):
        config_lib.apply_overrides(config_lib.Config(), ["train.maxsteps=3"])
    with pytest.raises(UserError, match="section.field=value"):
        config_lib.apply_overrides(config_lib.Config(), ["maxsteps"])


def test_every_recipe_loads():
    recipes = sorted((ROOT / "configs").rglob("*.yaml"))
    assert recipes
    for path in recipes:
        config_lib.load(path)


def test_quickstart_recipe_file_matches_embedded():
    from varattn.cli.quickstart import quickstart_config

    assert config_lib.load(ROOT / "configs" / "quickstart.yaml") == quickstart_config("soft", "")


def test_a_mode_brings_its_own_defaults_unless_set(tmp_path):
    """vae-rws samples 5 and vae-dirichlet warms up 1000 steps where nothing sets them; the recipe's
    top level, its modes: block and an override each win over the mode's default, in that order."""
    recipe = ROOT / "configs" / "multi30k" / "rnn.yaml"
    assert config_lib.load(recipe, ["model.mode=vae-rws"]).model.samples == 5
    assert config_lib.load(recipe, ["model.mode=vae-rws", "model.samples=3"]).model.samples == 3
    assert config_lib.load(recipe, ["model.mode=vae-sample"]).model.samples == 1
    assert config_lib.load(recipe, ["model.mode=vae-dirichlet"]).train.warmup_steps == 1000
    assert config_lib.load(recipe, ["model.mode=marginal"]).train.warmup_steps == 0
    own = tmp_path / "own.yaml"
    own.write_text("model:\n  mode: vae-rws\n  samples: 2\nmodes:\n  vae-dirichlet:\n    train:\n      warmup_steps: 7\n")
    assert config_lib.load(own).model.samples == 2
    assert config_lib.load(own, ["model.mode=vae-dirichlet"]).train.warmup_steps == 7
    assert config_lib.load(own, ["model.mode=vae-dirichlet", "train.warmup_steps=3"]).train.warmup_steps == 3
    assert config_lib.load(ROOT / "configs" / "iwslt14" / "rnn.yaml", ["model.mode=vae-dirichlet"]).train.warmup_steps == 5000
    assert config_lib.from_dict({"model": {"mode": "vae-rws"}}).model.samples == 5
    saved = config_lib.Config().to_dict()
    saved["model"]["mode"] = "vae-rws"
    assert config_lib.from_saved(saved, "config.yaml").model.samples == 1  # a saved run keeps what it trained with


def test_an_old_recipe_path_names_the_command_that_replaced_it(tmp_path):
    with pytest.raises(UserError) as error:
        config_lib.load(ROOT / "configs" / "multi30k" / "vae-enum.yaml")
    line = str(error.value)
    assert "\n" not in line and f"{ROOT / 'configs' / 'multi30k' / 'rnn.yaml'} model.mode=vae-enum" in line
    with pytest.raises(UserError, match="transformer.yaml model.mode=vae-rws"):
        config_lib.load(ROOT / "configs" / "iwslt14" / "transformer-vae-rws.yaml")
    with pytest.raises(UserError, match=r"vqa2.yaml with model.mode=soft"):
        config_lib.load(ROOT / "configs" / "vqa" / "soft.yaml")
    with pytest.raises(UserError, match="config file not found"):
        config_lib.load(tmp_path / "nothing.yaml")


def test_a_renamed_key_is_refused_in_a_recipe_and_read_from_a_saved_run(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  dirichlet_warmup_steps: 10\n")
    with pytest.raises(UserError, match=f"{recipe}: train.dirichlet_warmup_steps is now train.warmup_steps"):
        config_lib.load(recipe)
    with pytest.raises(UserError, match="train.dirichlet_warmup_steps is now train.warmup_steps"):
        config_lib.apply_overrides(config_lib.Config(), ["train.dirichlet_warmup_steps=5"])
    saved = config_lib.Config().to_dict()
    del saved["train"]["warmup_steps"]
    saved["train"]["dirichlet_warmup_steps"] = 10
    assert config_lib.from_saved(saved, "config.yaml").train.warmup_steps == 10


def test_every_setting_has_help_and_ranges_come_from_the_fields():
    """config show's meanings and validation's ranges both come from the field metadata, nothing else."""
    import dataclasses

    rows = config_lib.describe(config_lib.Config())
    assert all(meaning for _, _, meaning in rows), [key for key, _, meaning in rows if not meaning]
    for section, settings in config_lib.sections().items():
        for field in dataclasses.fields(settings):
            low = field.metadata.get("low")
            if low is not None and field.type in ("int", "float"):
                below = low - 1 if field.metadata["low_open"] is False else low
                with pytest.raises(UserError, match=f"{section}.{field.name}="):
                    config_lib.apply_overrides(config_lib.Config(), [f"{section}.{field.name}={below}"]).validate()
