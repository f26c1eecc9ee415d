"""Every option of every command is checked up front: a nonsense value is exit 2 and one
``error:`` line on stderr naming the option, before any image is read or any training,
benchmark, comparison or import starts — and no traceback.

The bad values are derived from the Typer app itself (each option's type, range and path
constraints), so an option added later is covered without touching this file; an option that
genuinely takes any value of its type is named in ALLOWLIST with the reason."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.main import get_command
from typer.testing import CliRunner

from irctl.cli.app import app

runner = CliRunner()

#: (command, option) → why any value of its type is fine (no out-of-range value to try).
ALLOWLIST: dict[tuple[str, str], str] = {
    ("restore", "--seed"): "any integer seeds the generator",
    ("benchmark", "--seed"): "any integer seeds the generator",
    ("compare", "--seed"): "any integer seeds the generator",
    ("restore", "--suffix"): "any text but a path separator (test_a_suffix_cannot_leave_dst)",
    ("eval", "--pred-suffix"): "any text: it is only compared with file stems",
    ("import", "--key"): "a key inside the checkpoint, known only once the file is read",
    ("restore", "--disparity"): "any float: the NTIRE disparity of the bokeh task's inputs",
}


def _commands() -> dict[str, typing.Any]:
    return dict(get_command(app).commands)


def _options(command) -> list:
    return [p for p in command.params if p.opts and p.opts[0].startswith("-")]


def _long(param) -> str:
    return next(o for o in param.opts if o.startswith("--"))


def _base_type(param) -> type:
    annotation = param.type_descriptor.annotation
    args = typing.get_args(annotation)
    return args[0] if typing.get_origin(annotation) is list and args else annotation


@pytest.fixture()
def places(tmp_path: Path) -> dict[str, Path]:
    """A folder with one tiny image, a regular file, a folder, and room for outputs."""
    images = tmp_path / "images"
    images.mkdir()
    pixels = (np.arange(16 * 16 * 3) % 251).astype(np.uint8).reshape(16, 16, 3)
    PILImage.fromarray(pixels).save(images / "a.png")
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("not a folder")
    checkpoint = tmp_path / "official.pth"
    checkpoint.write_bytes(b"not read by this test")
    return {"images": images, "file": a_file, "dir": images, "ckpt": checkpoint, "tmp": tmp_path}


def _base_args(command: str, places: dict[str, Path]) -> list[str]:
    """Valid required options, and cheap settings in case a bad value got through."""
    tmp = places["tmp"]
    return {
        "restore": ["--src", str(places["images"]), "--dst", str(tmp / "out")],
        "eval": ["--pred", str(places["images"]), "--gt", str(places["images"])],
        "train": ["--preset", "denoise-tiny", "--out", str(tmp / "run"), "--iterations", "1"],
        "benchmark": ["--preset", "denoise-tiny", "--sizes", "16", "--tiles", "0"],
        "compare": ["--models", "denoise-tiny", "--out", str(tmp / "cmp")],
        "import": [
            "--from",
            str(places["ckpt"]),
            "--preset",
            "denoise-tiny",
            "--out",
            str(tmp / "w.safetensors"),
        ],
    }[command]


def _nonsense(command: str, param, places: dict[str, Path]) -> list[str]:
    """Values the option must refuse, derived from its declared type and constraints."""
    kind = _base_type(param)
    allowed = (command, _long(param)) in ALLOWLIST
    info = param.type_descriptor.parameter_info
    if kind in (int, float):
        values = ["not-a-number"]
        if param.min is not None:
            values.append(str(param.min - 1))
        if param.max is not None:
            values.append(str(param.max + 1))
        assert len(values) > 1 or allowed, (
            f"{command} {_long(param)}: a number without a range (typer.Option(min=...)); if "
            "every value is fine, add it to ALLOWLIST with the reason"
        )
        return values
    if kind is Path:
        if info.exists:
            values = [str(places["tmp"] / "does-not-exist")]
        else:  # written or created: nothing can be made beneath a regular file
            values = [str(places["file"] / "below-a-file")]
        if not info.file_okay:
            values.append(str(places["file"]))
        if not info.dir_okay:
            values.append(str(places["dir"]))
        return values
    if kind is str:
        if allowed:
            return []
        return ["??"]
    raise AssertionError(f"{command} {_long(param)}: type {kind} has no nonsense here; add it")


def _cases() -> list[tuple[str, str, list[str]]]:
    """(command, option, argv after the base args) for every option of every command; paths
    are placeholders filled in by the test (the temporary folder is per test)."""
    cases = []
    for name, command in _commands().items():
        for param in _options(command):
            if param.is_flag:
                for flag in [o for o in param.opts + param.secondary_opts if o.startswith("--")]:
                    cases.append((name, flag, [f"{flag}=yes"]))
            else:
                cases.append((name, _long(param), []))
    return cases


@pytest.fixture()
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tripwires where each command's real work starts (reading images, training steps,
    measuring, scoring, importing): an option checked up front never gets there."""
    import irctl.cli.eval_cmd
    import irctl.engine.benchmark
    import irctl.engine.compare
    import irctl.engine.importer
    import irctl.engine.restore
    import irctl.engine.train

    def tripwire(*_args, **_kwargs):
        raise AssertionError("the command started its work with a nonsense option")

    for module, name in (
        (irctl.engine.restore, "run_jobs"),
        (irctl.engine.train, "_train_stage"),
        (irctl.engine.benchmark, "run_benchmark"),
        (irctl.engine.compare, "run_heldout"),
        (irctl.engine.importer, "import_official"),
        (irctl.cli.eval_cmd, "evaluate_folders"),
    ):
        monkeypatch.setattr(module, name, tripwire)


def _assert_usage_error(result, option: str, argv: list[str]) -> None:
    shown = f"{argv}: exit {result.exit_code}, stderr {result.stderr!r}, {result.exception!r}"
    assert result.exit_code == 2, shown
    assert not isinstance(result.exception, AssertionError), shown  # a tripwire
    assert "Traceback" not in result.output, shown
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert option in lines[0], shown


@pytest.mark.parametrize(("command", "option", "flag_argv"), _cases())
def test_every_option_refuses_nonsense_up_front(
    command: str, option: str, flag_argv: list[str], places: dict[str, Path], no_work: None
) -> None:
    base = _base_args(command, places)
    if flag_argv:
        values = [flag_argv]
    else:
        param = next(p for p in _options(_commands()[command]) if _long(p) == option)
        values = [[option, value] for value in _nonsense(command, param, places)]
    for extra in values:
        result = runner.invoke(app, [command, *base, *extra])
        _assert_usage_error(result, option, [command, *extra])


def test_the_base_arguments_alone_reach_the_work(places: dict[str, Path], no_work: None) -> None:
    """The control: without a bad option, each command gets to its tripwire, so the test
    above sees the options refused, not the base arguments."""
    for command in _commands():
        result = runner.invoke(app, [command, *_base_args(command, places)])
        assert isinstance(result.exception, AssertionError), (command, result.output)


def test_unknown_and_missing_options_are_one_line(places: dict[str, Path]) -> None:
    for command, cmd in _commands().items():
        result = runner.invoke(app, [command, "--no-such-option", "1"])
        _assert_usage_error(result, "--no-such-option", [command])
        base = _base_args(command, places)
        for param in [p for p in _options(cmd) if p.required]:
            flag = _long(param)
            at = next(i for i, arg in enumerate(base) if arg in param.opts)
            without = base[:at] + base[at + 2 :]
            result = runner.invoke(app, [command, *without])
            _assert_usage_error(result, flag, [command, *without])
    result = runner.invoke(app, ["no-such-command"])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1


def test_help_still_works_and_keeps_angle_brackets() -> None:
    """--help is not an error; Markdown rendering used to eat `<preset>`, `<method>`,
    `<stem>` from the help texts."""
    for command, cmd in _commands().items():
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "300"})
        assert result.exit_code == 0, result.output
        sources = [cmd.help or ""] + [p.help or "" for p in cmd.params]
        for placeholder in set(re.findall(r"<[a-z_]+>", " ".join(sources))):
            assert placeholder in result.stdout, (command, placeholder)
    assert runner.invoke(app, ["--help"]).exit_code == 0


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--steps", "0"], "--steps"),  # silently ran the preset's 20
        (["--tile", "-5"], "--tile"),  # a traceback
        (["--tile-overlap", "-3"], "--tile-overlap"),  # a traceback
        (["--tile", "3"], "--tile"),  # 877 s: 3 844 tiles per network call
        (["--tile", "32", "--tile-overlap", "64"], "--tile-overlap"),  # silently clamped
        (["--tile", "16"], "--tile"),  # the preset's overlap 32 silently clamped to 15
        (["--sampler", "euler"], "--sampler"),
        (["--ext", "bmp"], "--ext"),  # refused after the model ran on every image
    ],
)
def test_restore_options_that_cannot_work_fail_before_any_image_is_read(
    places: dict[str, Path], no_work: None, args: list[str], option: str
) -> None:
    base = _base_args("restore", places)
    _assert_usage_error(runner.invoke(app, ["restore", *base, *args]), option, args)


def test_a_dst_that_is_a_file_and_an_unwritable_ext_fail_before_the_model_loads(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import irctl.engine.restore

    def no_model(**_kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(irctl.engine.restore, "load_restorer", no_model)
    src = ["--src", str(places["images"])]
    result = runner.invoke(app, ["restore", *src, "--dst", str(places["file"])])
    _assert_usage_error(result, "--dst", ["--dst", "file"])
    result = runner.invoke(app, ["restore", *src, "--dst", str(places["tmp"]), "--ext", "bmp"])
    _assert_usage_error(result, "--ext", ["--ext", "bmp"])


def test_a_suffix_cannot_leave_dst(places: dict[str, Path], no_work: None) -> None:
    base = _base_args("restore", places)
    result = runner.invoke(app, ["restore", *base, "--suffix", "/../../escaped"])
    _assert_usage_error(result, "--suffix", ["--suffix", "/../../escaped"])
