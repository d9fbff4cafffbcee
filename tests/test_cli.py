"""The `resshift` command package: Hydra pass-through sub-commands and the weights table listing."""

from __future__ import annotations

import pytest

from resshift.cli import main
from resshift.weights import FILES


def test_eval_passes_hydra_overrides_through(capsys):
    assert main(["eval", "--cfg", "job", "method=small-sr3-15", "dataset=embedded"]) == 0
    out = capsys.readouterr().out
    assert "name: small-sr3" in out and "steps: 15" in out and "name: embedded" in out


def test_train_passes_hydra_overrides_through(capsys):
    assert main(["train", "--cfg", "job", "train.steps=7"]) == 0
    assert "steps: 7" in capsys.readouterr().out


def test_weights_list_shows_every_file_with_url_hash_and_licence(capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    for entry in FILES.values():
        assert entry.key in out and entry.licence in out and (entry.url or "shipped with the package") in out


def test_data_build_imagenet_test_needs_its_source(capsys):
    assert main(["data", "build", "imagenet-test"]) == 1
    assert "--imagenet-val" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["eval", "train"])
def test_hydra_errors_are_exit_codes(command, capsys):
    assert main([command, "no_such_key_anywhere=1"]) != 0
