"""Every tool that ends its command line with config overrides refuses a flag given after
them, naming it and where it goes, and (YAML configs) an odd number of override words,
while the arguments are read (exit status 2), before any model or data is touched."""
import sys

import pytest

from adn_testing import load_tool

YAML = "configs/mask_rcnn_ada_r18_embedded_cpu.yaml"
LAZY = "configs/lazy/mask_rcnn_ada_r18_embedded_cpu.py"

#: tool -> (how its arguments are read, the words before the overrides, an override, a flag)
TOOLS = {
    "train_net": ("invoke_main", ["--config-file", YAML], ["SOLVER.MAX_ITER", "4"], "--resume"),
    "lazyconfig_train_net": ("invoke_main", ["--config-file", LAZY], ["train.max_iter=4"], "--eval-only"),
    "analyze_depths": ("parse_args", ["--config-file", YAML], ["MODEL.WEIGHTS", "m.pth"], "--json"),
    "analyze_features": ("main", ["--config-file", YAML, "--output", "out"],
                         ["MODEL.WEIGHTS", "m.pth"], "--images"),
    "export_model": ("parse_args", ["--config-file", YAML, "--output", "out"],
                     ["MODEL.WEIGHTS", "m.pth"], "--depth"),
    "demo": ("main", ["--config-file", YAML, "--input", "a.jpg", "--output", "o.jpg", "--opts"],
             ["MODEL.WEIGHTS", "m.pth"], "--depth"),
    "study": ("main", ["--seeds", "0", "1", "--opts"], ["SOLVER.MAX_ITER", "4"], "--train-only"),
}


def _refusal(capsys, monkeypatch, name, argv):
    entry, *_ = TOOLS[name]
    tool = load_tool(name)
    with pytest.raises(SystemExit) as raised:
        if entry == "invoke_main":
            monkeypatch.setattr(sys, "argv", [f"{name}.py", *argv])
            tool.invoke_main()
        else:
            getattr(tool, entry)(argv)
    assert raised.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_a_flag_after_the_overrides_is_refused_naming_where_it_goes(capsys, monkeypatch, name):
    _, before, override, flag = TOOLS[name]
    err = _refusal(capsys, monkeypatch, name, [*before, *override, flag])
    assert f"{flag} comes after the config overrides" in err, err
    assert f"put {flag} before the first override" in err


@pytest.mark.parametrize("name", sorted(n for n in TOOLS if n != "lazyconfig_train_net"))
def test_an_odd_number_of_override_words_is_refused(capsys, monkeypatch, name):
    _, before, override, _ = TOOLS[name]
    err = _refusal(capsys, monkeypatch, name, [*before, *override, "MODEL.DEVICE"])
    assert "config overrides come in KEY VALUE pairs; got 3 words" in err, err


@pytest.mark.parametrize("name", ["export_model", "demo"])
@pytest.mark.parametrize("depth, message", [
    ("TXFF", "Invalid depth setting 'TXFF': give one letter per adaptive part"),
    ("all", "'all' names several settings; this option takes one"),
])
def test_a_depth_option_of_a_bad_form_is_refused_while_the_arguments_are_read(
        capsys, monkeypatch, name, depth, message):
    _, before, _, _ = TOOLS[name]
    before = [w for w in before if w != "--opts"]
    err = _refusal(capsys, monkeypatch, name, [*before, "--depth", depth])
    assert f"argument --depth: {message}" in err, err


def test_a_depth_of_the_wrong_number_of_letters_is_a_bad_argument_too(capsys, tmp_path):
    # refused once the config says how many letters the model's settings have, before
    # any model is built: exit 2, as argparse's own refusals
    with pytest.raises(SystemExit) as raised:
        load_tool("export_model").main(["--config-file", YAML, "--output", str(tmp_path / "e"),
                                        "--depth", "TTF"])
    assert raised.value.code == 2
    assert "depth 'TTF': Invalid depth setting 'TTF': expected 4 letters" in capsys.readouterr().err


def test_demo_compare_depths_words_stand_alone(capsys, monkeypatch):
    _, before, _, _ = TOOLS["demo"]
    before = [w for w in before if w != "--opts"]
    err = _refusal(capsys, monkeypatch, "demo", [*before, "--compare-depths", "all", "TTTT"])
    assert "--compare-depths all stands alone" in err


def test_set_depth_names_what_it_was_given_instead_of_a_model():
    import torch

    import adadet

    for wrong in (None, "model.ts"):
        with pytest.raises(TypeError, match="A depth is set on a model .* pass the detector itself"):
            adadet.set_depth(wrong, "FFFF")
    exported = torch.jit.script(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="exported at, so its depth cannot change: export the setting"):
        adadet.set_depth(exported, "TTTT")


def test_each_training_tool_names_the_other_for_the_other_config_system(tmp_path):
    """train_net.py on a LazyConfig (.py, or the config.yaml a lazy run saves) and
    lazyconfig_train_net.py on a yacs YAML say which tool reads that file."""
    import argparse

    from detectron2.config import get_cfg

    from adadet import add_adn_config
    from adadet.config import merge_config
    from adn_testing import ROOT, load_tool

    lazy = ROOT / "configs" / "lazy" / "mask_rcnn_ada_r18_embedded_cpu.py"
    saved = tmp_path / "config.yaml"  # what LazyConfig.save writes: its lower-case sections
    saved.write_text("model:\n  _target_: detectron2.modeling.GeneralizedRCNN\ntrain:\n  max_iter: 4\n")
    for path in (lazy, saved):
        cfg = get_cfg()
        add_adn_config(cfg)
        with pytest.raises(ValueError, match=r"is a LazyConfig .* tools/lazyconfig_train_net.py"):
            merge_config(cfg, str(path))
    yacs = ROOT / "configs" / "mask_rcnn_ada_r18_embedded_cpu.yaml"
    tool = load_tool("lazyconfig_train_net")
    with pytest.raises(SystemExit, match=r"is a YAML config of Detectron2's yacs .* tools/train_net.py"):
        tool.load_config(argparse.Namespace(config_file=str(yacs), opts=[]))
