"""`attnkit list` prints what --attention means for each kind of model (attnkit.presets.attention_table)."""

from __future__ import annotations

from attnkit import presets
from attnkit.cli import main


def test_list_prints_the_attention_table(capsys):
    assert main(["list", "--kind", "sequence"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("--attention NAME means"):]
    for models, meaning, names in presets.attention_table():
        assert f"{models}: {meaning}" in table
        assert ", ".join(names) in table
    assert "luong-general" in table and "scaled_dot" in table
