"""Every installed program has a manual page built from man/<program>.<section>.scd
that man(1) renders without warnings, documents every option the program's
--help lists, and shows examples."""
import os
import re
import subprocess
from pathlib import Path

import pytest

from binaries import binary

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = sorted(p.name for p in (REPO / "apps").iterdir() if (p / "CMakeLists.txt").exists())
# Takes a socket path, not options: --help would be a path.
NO_HELP = {"qrexec-fork-server"}
OPTION = re.compile(r"(?<![\w/-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")


def man_dir():
    return Path(os.environ.get("QREXEC_MAN_DIR", REPO / "build" / "man"))


def page_of(program):
    pages = sorted(man_dir().glob(f"{program}.[0-9]"))
    assert pages, f"no manual page for {program} in {man_dir()} (scdoc installed?)"
    return pages[0]


def render(page):
    env = dict(os.environ, MANWIDTH="100", LC_ALL="C.UTF-8")
    result = subprocess.run(["man", "--warnings", "-E", "ascii", "-l", str(page)],
                            capture_output=True, env=env, timeout=60)
    text = subprocess.run(["col", "-b"], input=result.stdout, capture_output=True).stdout
    return result.returncode, result.stderr.decode(), text.decode()


def help_options(program):
    result = subprocess.run([binary(program), "--help"], capture_output=True,
                            stdin=subprocess.DEVNULL, timeout=30)
    text = (result.stdout + result.stderr).decode()
    # The usage line repeats argv[0], which may be a path.
    return {m.group(1) for m in OPTION.finditer(text)}


def test_every_program_has_a_source_page():
    sources = {p.name.split(".")[0] for p in (REPO / "man").glob("*.scd")}
    assert sources == set(PROGRAMS)


@pytest.mark.parametrize("program", PROGRAMS)
def test_page_renders_without_warnings_and_has_examples(program):
    code, warnings, text = render(page_of(program))
    assert code == 0 and warnings == "", warnings
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "EXAMPLES"):
        assert re.search(rf"^{section}$", text, re.M), f"{program}: no {section} section"


@pytest.mark.parametrize("program", sorted(set(PROGRAMS) - NO_HELP))
def test_page_documents_every_option_of_help(program):
    options = help_options(program)
    assert len(options) >= 2, f"{program}: no options found in --help"
    _, _, text = render(page_of(program))
    documented = {m.group(1) for m in OPTION.finditer(text)}
    missing = sorted(options - documented)
    assert not missing, f"{program}: options of --help missing from the page: {missing}"
