import re
import subprocess
import sys

import pytest

from fcn_deploy.contract.classes import (
    CLASS_SET_NAMES,
    CLASS_SETS,
    VOC_CLASSES,
    class_names,
    read_class_file,
)
from fcn_deploy.data.voc import VOC_CLASSES as VOC_FROM_DATA
from fcn_deploy.errors import OptionError


def test_the_sets_and_their_sizes():
    assert CLASS_SET_NAMES == ("voc", "pascal-context", "nyud40", "siftflow")
    assert VOC_FROM_DATA is VOC_CLASSES and CLASS_SETS["voc"] is VOC_CLASSES
    sizes = {"voc": 21, "nyud40": 40, "siftflow": 33}
    for name, count in sizes.items():
        names = class_names(name, count)
        assert len(names) == len(set(names)) == count
    assert class_names("voc", 21)[0] == "background"
    assert class_names("nyud40", 40)[-1] == "otherprop"
    assert class_names("siftflow", 33)[-1] == "window"


def test_pascal_context_with_and_without_background():
    without = class_names("pascal-context", 59)
    assert len(without) == len(set(without)) == 59
    assert without[0] == "aeroplane" and without[-1] == "wood"
    assert class_names("pascal-context", 60) == ["background", *without]


@pytest.mark.parametrize("spec, count, needles", [
    ("voc", 7, ["'voc'", "21", "7"]),
    ("pascal-context", 21, ["'pascal-context'", "59 or 60", "21"]),
    ("siftflow", 34, ["33", "34"]),
])
def test_a_count_mismatch_names_both_counts_and_the_set(spec, count, needles):
    with pytest.raises(OptionError) as e:
        class_names(spec, count)
    assert all(n in str(e.value) for n in needles) and "\n" not in str(e.value)


def test_an_unknown_name_lists_the_sets(tmp_path):
    with pytest.raises(OptionError, match="neither a class set") as e:
        class_names("cityscapes", 19)
    assert all(name in str(e.value) for name in CLASS_SET_NAMES)
    with pytest.raises(OptionError, match="neither a class set"):
        class_names(str(tmp_path), 3)  # a folder is not a file of names


def test_a_file_of_names(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("\ufeffsky\r\n  road \nvoiture électrique\n\n\n", encoding="utf-8")
    assert class_names(str(path), 3) == ["sky", "road", "voiture électrique"]
    with pytest.raises(OptionError) as e:
        class_names(str(path), 4)
    assert all(n in str(e.value) for n in (str(path), "3 classes", "4"))


@pytest.mark.parametrize("text, needle", [
    ("sky\n\nroad\n", "line 2 is empty"),
    ("sky\nroad\nsky\n", "line 3 repeats class name 'sky' (line 1)"),
    ("\n\n", "no class names"),
])
def test_bad_files_are_refused_naming_the_line(tmp_path, text, needle):
    path = tmp_path / "classes.txt"
    path.write_text(text)
    with pytest.raises(OptionError, match=re.escape(needle)) as e:
        read_class_file(path)
    assert str(path) in str(e.value)


def test_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_bytes("ciel\nroute\n".encode("utf-16"))
    with pytest.raises(OptionError, match="must be UTF-8"):
        class_names(str(path), 2)


def test_needs_neither_numpy_nor_torch():
    code = ("import sys; import fcn_deploy.contract.classes; "
            "sys.exit(','.join(m for m in ('numpy', 'torch') if m in sys.modules) or None)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
