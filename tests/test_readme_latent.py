"""The README's "Make any attention layer latent" example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
HEADING = "## Make any attention layer latent"


def example() -> str:
    text = README.read_text(encoding="utf-8")
    assert HEADING in text, f"{README} has no section {HEADING!r}"
    block = re.search(r"```python\n(.*?)```", text.split(HEADING, 1)[1], re.S)
    assert block, f"no ```python block after {HEADING!r} in {README}"
    return block.group(1)


def test_readme_latent_example_runs(capsys):
    namespace = {"__name__": "readme_example"}
    exec(compile(example(), f"{README}:{HEADING}", "exec"), namespace)
    terms = namespace["terms"]
    assert terms.loss.shape == (4,) and bool(terms.loss.isfinite().all())
    assert namespace["prior_net"].weight.grad is not None and namespace["output"].weight.grad is not None
    assert "nll" in capsys.readouterr().out
