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
