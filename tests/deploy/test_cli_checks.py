"""The deploy tools' argument checks: one stderr line with the tool's prefix, exit status 2."""
import pytest
from PIL import Image

from adadet.deploy.cli_checks import ArgumentChecks

CHECKS = ArgumentChecks("tool.py: error: ")


def _stops(capsys, call):
    """The line ``call`` prints on stderr when it stops the tool with status 2."""
    with pytest.raises(SystemExit) as raised:
        call()
    assert raised.value.code == 2
    return capsys.readouterr().err


def test_readable_file_names_the_problem_and_its_fix(tmp_path, capsys):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    fixes = {"is a directory": "give a file in it"}
    for path, problem, fix in ((tmp_path / "absent.jpg", "does not exist", "copy it"),
                               (tmp_path, "is a directory", "give a file in it"),
                               (empty, "is empty (0 bytes)", "copy it")):
        err = _stops(capsys, lambda: CHECKS.readable_file(str(path), "--input", "copy it", fixes))
        assert err == f"tool.py: error: --input {path} {problem}: {fix}.\n"
    good = tmp_path / "notes.txt"
    good.write_text("x")
    CHECKS.readable_file(str(good), "--input", "copy it")  # no exit


def test_image_file_reads_the_header(tmp_path, capsys):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    err = _stops(capsys, lambda: CHECKS.image_file(str(text), "--sample-image", "give a JPEG"))
    assert err.startswith(f"tool.py: error: --sample-image {text} is not an image (")
    assert err.endswith("): give a JPEG.\n")
    image = tmp_path / "image.png"
    Image.new("RGB", (4, 3)).save(image)
    CHECKS.image_file(str(image), "--sample-image", "give a JPEG")


def test_writable_directory_creates_it_or_gives_the_reason(tmp_path, capsys):
    target = tmp_path / "new" / "folder"
    CHECKS.writable_directory(str(target), "{path}: {reason}")
    assert target.is_dir()
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    err = _stops(capsys, lambda: CHECKS.writable_directory(str(a_file / "sub"), "no {path} ({reason})"))
    assert err == f"tool.py: error: no {a_file / 'sub'} (Not a directory)\n"
