"""Method-owned preset tables: each method's config class parses its own tables; presets and
checkpoints written before (every table present, used or not) still load."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from irctl.config import PresetError
from irctl.engine.checkpoint import load_checkpoint
from irctl.methods.latent_refusion import LatentRefusionConfig
from irctl.methods.refusion import RefusionConfig
from irctl.methods.regression import RegressionConfig
from irctl.presets import (
    available_presets,
    load_preset,
    preset_from_dict,
    preset_to_dict,
    weights_path,
)


@pytest.mark.parametrize("name", available_presets())
def test_every_preset_round_trips_through_plain_data(name: str) -> None:
    preset = load_preset(name)
    again = preset_from_dict(preset_to_dict(preset))
    assert again == preset
    assert preset_to_dict(again) == preset_to_dict(preset)


def test_each_method_parses_only_its_own_tables() -> None:
    assert isinstance(load_preset("denoise-tiny").model, RefusionConfig)
    assert isinstance(load_preset("dehaze-latent-tiny").model, LatentRefusionConfig)
    regression = load_preset("denoise-regression-tiny")
    assert isinstance(regression.model, RegressionConfig)
    assert "diffusion" not in preset_to_dict(regression)  # no table it does not use
    data = preset_to_dict(load_preset("denoise-regression-tiny"))
    data["diffusion"] = {"T": 20}
    with pytest.raises(PresetError, match="diffusion"):
        preset_from_dict(data)
    data = preset_to_dict(load_preset("denoise-tiny"))
    data["network"]["arch"] = "nafssr"  # a regression-only key
    with pytest.raises(PresetError, match="arch"):
        preset_from_dict(data)


def test_bundled_checkpoints_written_before_method_tables_load_as_their_presets() -> None:
    """The bundled weights embed the old layout (network, latent and diffusion tables in every
    preset, with all their fields); they load as the preset their TOML describes today."""
    leftovers = 0
    for name in available_presets():
        preset = load_preset(name)
        path = weights_path(preset)
        if path is None or not path.is_file():
            continue
        with safe_open(str(path), framework="pt") as fh:
            embedded = json.loads(fh.metadata()["preset"])
        leftovers += len(set(embedded) - set(preset_to_dict(preset)))  # tables not its method's
        assert preset_to_dict(load_checkpoint(path).preset) == preset_to_dict(preset), name
    assert leftovers >= 10  # the old layout is really exercised


def test_old_layout_leftovers_load_only_at_their_old_defaults() -> None:
    """A table or field the method does not own is dropped when it holds the old shared
    schema's default (it never meant anything for this method), and refused otherwise."""
    data = preset_to_dict(load_preset("denoise-regression-tiny"))
    data["diffusion"] = {"T": 100, "max_sigma": 50.0, "schedule": "cosine", "eps": 0.005}
    data["latent"] = {"channels": 8, "mult": [1, 2, 4], "latent_channels": 4}
    assert preset_from_dict(data) == load_preset("denoise-regression-tiny")
    data = preset_to_dict(load_preset("dehaze-latent-tiny"))
    data["network"].update(views=1, upscale=1, arch="unet", blocks=8)
    assert preset_from_dict(data) == load_preset("dehaze-latent-tiny")
    data["network"]["views"] = 2  # not the old default: it meant something, so refuse it
    with pytest.raises(PresetError, match="views"):
        preset_from_dict(data)


def test_cross_section_consistency_is_the_methods_check() -> None:
    data = preset_to_dict(load_preset("stereo-sr-tiny"))
    data["network"]["upscale"] = 2
    with pytest.raises(PresetError, match="upscale"):
        preset_from_dict(data)


@pytest.mark.parametrize(
    ("name", "scalars", "disparity"),
    [
        ("bokeh-latent-official", 2, 35.0),
        ("bokeh-pixel-tiny", 2, 35.0),
        ("bokeh-latent-tiny", 3, None),
    ],
)
def test_a_bokeh_network_takes_as_many_scalars_as_the_task_gives(name, scalars, disparity) -> None:
    """Lens codes, and the disparity when the preset sets one: anything else is refused at load."""
    data = preset_to_dict(load_preset(name))
    data["network"]["cond_scalars"] = scalars
    data["network"]["cond_scale"] = []
    data["degradation"]["bokeh_disparity"] = disparity
    with pytest.raises(PresetError, match="a bokeh model is conditioned on"):
        preset_from_dict(data)


def test_a_task_without_a_bundled_model_names_the_presets_to_import_for() -> None:
    from irctl.presets import default_preset_for_task

    with pytest.raises(PresetError, match="no bundled model for task 'derain'") as err:
        default_preset_for_task("derain")
    assert "derain-irsde-official" in str(err.value)
    with pytest.raises(PresetError, match="no model for task 'colorize'; tasks: bokeh"):
        default_preset_for_task("colorize")


def test_a_task_with_one_bundled_model_uses_it_without_a_default_flag() -> None:
    """desnow ships one model (DTPM) and marks none default: `--task desnow` runs it."""
    from irctl.presets import default_preset_for_task

    preset = load_preset(default_preset_for_task("desnow"))
    assert preset.task == "desnow" and not preset.default
    assert weights_path(preset) is not None and weights_path(preset).is_file()
