"""The training loop: any Restorer's ``loss(batch)`` under Lion/Adam, cosine decay and an EMA.

Reproducibility by construction: the model is initialised from ``seed`` and each step's batch,
timesteps and noise come from a generator seeded with (seed, step). A resume therefore needs only
the weights, the optimiser state and the step number — no RNG snapshots — and continues
bit-exactly.

Files in ``out``: ``weights.safetensors`` (the deployable model: EMA weights, preset embedded),
``weights.state.safetensors`` (raw weights and optimiser state) and ``log.jsonl`` (one JSON object
per logged step).

A method with several stages (latent Refusion: ``["compressor", "diffusion"]``) trains them in
order, each with its own recipe (``[train.stages.<stage>]``) in its own folder ``out/<stage>/``;
the last stage's folder is ``out`` itself, and its weights hold every module (the frozen earlier
ones included), so one file is all ``restore`` needs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from irctl.config import DegradationConfig, Preset, TrainConfig
from irctl.data.datasets import PairedCropSampler, load_photos
from irctl.data.degrade import build_pair_synthesis
from irctl.engine.checkpoint import (
    Checkpoint,
    CheckpointError,
    atomic_save,
    checkpoint_metadata,
    flatten_modules,
    load_checkpoint,
    load_modules,
    state_path,
)
from irctl.engine.distributed import (
    average_gradients,
    barrier,
    init_from_env,
    rank_device,
    replicas_in_sync,
)
from irctl.engine.optim import EMA, build_optimizer, cosine_lr
from irctl.methods import build_restorer
from irctl.methods.base import Restorer
from irctl.presets import preset_to_dict
from irctl.tasks import get_task

WEIGHTS_NAME = "weights.safetensors"
LogFn = Callable[[dict], None]


@dataclass
class TrainResult:
    weights: Path
    step: int
    last_val: dict[str, float]


#: Odd 32-bit constants that spread seeds and ranks apart in the 32-bit seed space.
_SEED_STRIDE = 0x9E3779B1
_RANK_STRIDE = 0x85EBCA6B


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The generator for one training step on one rank: a pure function of (seed, step, rank).

    torch's CPU generator keeps only the low 32 bits of its seed, so they are mixed inside
    32 bits; seed 0 on rank 0 gives manual_seed(step).
    """
    return torch.Generator().manual_seed((seed * _SEED_STRIDE + rank * _RANK_STRIDE + step) % 2**32)


def build_sampler(
    preset: Preset,
    split: str,
    batch: int | None = None,
    cfg: TrainConfig | None = None,
    degradation: DegradationConfig | None = None,
) -> PairedCropSampler:
    """Training or validation crops of the preset's ``split`` photos, made into pairs by
    ``degradation`` (default: the preset's; a stage may train on its own, see
    :meth:`Restorer.stage_degradation`)."""
    cfg = cfg or preset.train
    degradation = degradation or preset.degradation
    names = getattr(preset.data, split)
    if not names:
        raise ValueError(f"preset {preset.name!r} lists no {split} photos")
    task = get_task(preset.task)
    multiple = task.patch_multiple(degradation)
    if cfg.patch % multiple:
        raise ValueError(f"patch {cfg.patch} must be a multiple of {multiple} (task {task.name})")
    return PairedCropSampler(
        load_photos(names, degradation),
        build_pair_synthesis(degradation),
        patch=cfg.patch,
        batch=batch or cfg.batch,
        augment_fn=task.augment,
        focus=cfg.focus,
    )


class _Validator:
    """Loss on a fixed validation batch with fixed draws (t, noise): comparable across steps,
    so the EMA/lr choices can be made from measurements (issue 3 §4)."""

    def __init__(
        self,
        preset: Preset,
        cfg: TrainConfig,
        stage: str,
        device: torch.device,
        degradation: DegradationConfig | None = None,
        n: int = 32,
    ) -> None:
        self.seed = cfg.seed + 7919
        self.stage = stage
        batch = build_sampler(preset, "val", batch=n, cfg=cfg, degradation=degradation).sample(
            torch.Generator().manual_seed(self.seed)
        )
        self.batch = batch.to(device)

    @torch.no_grad()
    def __call__(self, restorer: Restorer) -> float:
        generator = torch.Generator().manual_seed(self.seed + 1)
        loss, _ = restorer.loss(self.batch, generator, self.stage)
        return float(loss)


def _swap_weights(module: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Load ``state`` into ``module`` and return the weights it had."""
    previous = {k: v.detach().clone() for k, v in module.state_dict().items()}
    module.load_state_dict(state)
    return previous


def _save(
    out: Path,
    restorer: Restorer,
    emas: dict[str, EMA],
    optimizer: torch.optim.Optimizer,
    step: int,
    stage: str,
) -> Path:
    weights = out / WEIGHTS_NAME
    modules = restorer.modules()
    raw = flatten_modules(modules)
    # Deployable weights: every module, with the EMA of those this stage trains.
    deploy = dict(raw)
    deploy.update(
        {
            f"{name}.{k}": v.detach().cpu().contiguous()
            for name, ema in emas.items()
            for k, v in ema.shadow.items()
        }
    )
    opt_state = optimizer.state_dict()
    tensors = {f"raw.{k}": v for k, v in raw.items()}
    for idx, entries in opt_state["state"].items():
        for key, value in entries.items():
            tensors[f"opt.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = {"step": str(step), "param_groups": json.dumps(opt_state["param_groups"])}
    atomic_save(tensors, state_path(weights), meta)
    # Weights last: each file is atomic, and a kill between the two leaves steps that differ,
    # which --resume detects and refuses rather than mixing two steps' states.
    atomic_save(deploy, weights, checkpoint_metadata(restorer.preset, stage, step))
    return weights


def _resume(
    out: Path,
    restorer: Restorer,
    emas: dict[str, EMA],
    optimizer: torch.optim.Optimizer,
    stage: str,
) -> int:
    from safetensors import safe_open
    from safetensors.torch import load_file

    weights = out / WEIGHTS_NAME
    ckpt = load_checkpoint(weights)
    if preset_to_dict(ckpt.preset) != preset_to_dict(restorer.preset):
        raise CheckpointError(
            f"{weights}: was trained with a different preset; refusing to resume "
            "(start a new --out folder, or use the same preset and overrides)"
        )
    if ckpt.stage != stage:
        raise CheckpointError(f"{weights}: holds stage {ckpt.stage!r}, not {stage!r}")
    state_file = state_path(weights)
    tensors = load_file(str(state_file))
    with safe_open(str(state_file), framework="pt") as fh:
        meta = fh.metadata()
    if int(meta["step"]) != ckpt.step:
        raise CheckpointError(f"{state_file}: step does not match {weights}")
    raw = {k.removeprefix("raw."): v for k, v in tensors.items() if k.startswith("raw.")}
    load_modules(restorer.modules(), Checkpoint(raw, ckpt.preset, ckpt.stage, ckpt.step))
    for name, ema in emas.items():
        device = next(iter(ema.shadow.values())).device
        ema.shadow = {k: v.to(device).clone() for k, v in ckpt.module_state(name).items()}
    opt_state: dict = {"state": {}, "param_groups": json.loads(meta["param_groups"])}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            opt_state["state"].setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict(opt_state)
    return ckpt.step


def stage_dir(out: Path, stages: list[str], stage: str) -> Path:
    """Where one stage's checkpoint lives: ``out`` for the last stage, ``out/<stage>`` before."""
    return out if stage == stages[-1] else out / stage


def same_preset_until(
    a: Preset,
    b: Preset,
    stages: list[str],
    stage: str,
    depends_on: frozenset[str] | None = None,
) -> bool:
    """Whether ``a`` and ``b`` agree on everything a checkpoint of ``stage`` depends on: all
    but the ``[train.stages.<s>]`` recipes of the stages after it — so a later stage can be
    retrained longer or at another rate from the earlier stages' checkpoints — and, when the
    method says which (:meth:`Restorer.stage_depends_on`), only those top-level keys: DTPM's
    texture prior is one for every task, so another task's preset may start from it."""
    later = stages[stages.index(stage) + 1 :]

    def relevant(preset: Preset) -> dict:
        d = preset_to_dict(preset)
        recipes = d.get("train", {}).get("stages", {})
        for name in later:
            recipes.pop(name, None)
        if depends_on is not None:
            d = {k: v for k, v in d.items() if k in depends_on}
        return d

    return relevant(a) == relevant(b)


def stage_finished(
    preset: Preset,
    out: Path,
    stages: list[str],
    stage: str,
    depends_on: frozenset[str] | None = None,
) -> bool:
    """Whether ``out`` holds this stage's finished checkpoint, trained with this very preset
    (later stages' recipes and the keys the stage does not depend on aside)."""
    weights = stage_dir(out, stages, stage) / WEIGHTS_NAME
    if not weights.is_file():
        return False
    ckpt = load_checkpoint(weights)
    if not same_preset_until(ckpt.preset, preset, stages, stage, depends_on):
        raise CheckpointError(
            f"{weights}: was trained with a different preset; refusing to resume "
            "(start a new --out folder, or use the same preset and overrides)"
        )
    return ckpt.stage == stage and ckpt.step >= preset.train.for_stage(stage).iterations


def train(
    preset: Preset,
    out: Path,
    *,
    resume: bool = False,
    stop_at: int | None = None,
    log: LogFn | None = None,
    device: torch.device | None = None,
    stage: str | None = None,
    overwrite: bool = False,
    info: Callable[[str], None] | None = None,
    init: Path | None = None,
) -> TrainResult:
    """Train ``preset`` into ``out``; with ``resume`` continue from ``out``'s last checkpoint.

    ``stage`` trains one stage only (its earlier stages must be finished in ``out``); None
    trains every stage in order, skipping those already finished when resuming. ``stop_at``
    ends a stage early at that step (checkpointed), for time-sliced jobs; the learning-rate
    schedule still spans the stage's iterations.

    A run folder that already holds a run (weights, optimiser state or log of a stage to
    train) is refused unless ``resume`` continues it or ``overwrite`` starts it over: the
    bundled models took most of an hour each, and a forgotten --resume must not erase them.
    ``info`` hears one line as each stage starts (its steps, the step it resumed from), long
    before the first logged step.

    ``init`` fine-tunes: the first stage trained starts from that checkpoint's modules
    (:func:`start_from_checkpoint`) instead of its initialisation or the previous stage's run
    folder; the stages after it start from it as usual.
    """
    restorer = build_restorer(preset)
    stages = list(restorer.stages)
    todo = check_run_folder(preset, out, resume=resume, overwrite=overwrite, stage=stage)
    result: TrainResult | None = None
    for name in todo:
        iterations = preset.train.for_stage(name).iterations
        if (
            stage is None
            and resume
            and stage_finished(preset, out, stages, name, restorer.stage_depends_on(name))
        ):
            result = TrainResult(stage_dir(out, stages, name) / WEIGHTS_NAME, iterations, {})
            continue
        result = _train_stage(
            preset,
            out,
            stages,
            name,
            resume=resume,
            stop_at=stop_at,
            log=log,
            device=device,
            info=info,
            overwrite=overwrite,
            init=init if name == todo[0] else None,
        )
        if result.step < iterations:  # stopped early: later stages wait for a --resume
            break
    assert result is not None
    return result


def check_run_folder(
    preset: Preset, out: Path, *, resume: bool, overwrite: bool, stage: str | None
) -> list[str]:
    """The stages to train, once ``out`` is known to suit the request: one line (ValueError,
    :class:`CheckpointError`) for an unknown stage, --resume with nothing to resume, or a
    previous run that neither --resume nor --overwrite says what to do with. Cheap: the CLI
    calls it before it prints anything."""
    stages = list(build_restorer(preset).stages)
    if stage is not None and stage not in stages:
        raise ValueError(
            f"--stage {stage!r}: {preset.name} has no such stage; stages: {', '.join(stages)}"
        )
    if resume and overwrite:
        raise ValueError("--resume continues a run and --overwrite starts it over: give one")
    todo = [stage] if stage is not None else stages
    if resume and not any(_has_weights(stage_dir(out, stages, name)) for name in todo):
        raise CheckpointError(f"{out}: no checkpoint to resume from (train without --resume)")
    existing = [f for name in todo for f in run_files(stage_dir(out, stages, name))]
    if existing and not resume and not overwrite:
        raise RunExistsError(
            f"{out} already holds a training run ({existing[0]}); continue it with --resume, "
            "or start it over with --overwrite"
        )
    return todo


def _start_from_previous_stage(
    out: Path, stages: list[str], stage: str, restorer: Restorer
) -> None:
    """Stage k starts from every module stage k−1 saved (its trained ones as their EMA), then
    trains its own subset: a module trained in several stages (DiffIR's restorer, fine-tuned in
    stage 2) continues, it never restarts from its initialisation. ``carried_over`` may name a
    module's source differently (a frozen teacher copy of ``net``); ``fresh_modules`` are the
    ones no earlier stage trained, which keep this stage's own initialisation."""
    index = stages.index(stage)
    if index == 0:
        return
    for earlier in stages[:index]:
        weights = stage_dir(out, stages, earlier) / WEIGHTS_NAME
        if not weights.is_file():
            raise CheckpointError(
                f"stage {stage!r} needs the {earlier!r} stage first: no {weights} "
                f"(train it with --stage {earlier}, or without --stage to run every stage)"
            )
    weights = stage_dir(out, stages, stages[index - 1]) / WEIGHTS_NAME
    ckpt = load_checkpoint(weights)
    previous = stages[index - 1]
    depends_on = restorer.stage_depends_on(previous)
    if not same_preset_until(ckpt.preset, restorer.preset, stages, previous, depends_on):
        raise CheckpointError(f"{weights}: was trained with a different preset")
    renames = restorer.carried_over(stage)
    fresh = restorer.fresh_modules(stage)
    for name, module in restorer.modules().items():
        if name in fresh:
            continue
        source = renames.get(name, name)
        state = ckpt.module_state(source)
        if not state:
            raise CheckpointError(f"{weights}: no module {source!r} to start {name!r} from")
        load_modules({source: module}, ckpt)


def check_init(preset: Preset, init: Path) -> Checkpoint:
    """The checkpoint ``--init`` names, once it is known to suit ``preset``: an irctl
    checkpoint (never a pickle: an authors' release goes through ``irctl import`` first) of the
    same method. Its task, degradation and recipe may differ — that is what fine-tuning
    changes; whether its tensors fit the preset's networks is checked as they load."""
    ckpt = load_checkpoint(init)
    if ckpt.preset.method != preset.method:
        raise CheckpointError(
            f"{init}: holds a {ckpt.preset.method} model ({ckpt.preset.name}); "
            f"{preset.name} is {preset.method}"
        )
    return ckpt


def start_from_checkpoint(
    init: Path, stages: list[str], stage: str, restorer: Restorer
) -> tuple[list[str], list[str]]:
    """Fine-tuning: every module ``init`` holds is loaded, strictly (a tensor that does not fit
    is an error, not a silent partial load), and ``stage`` trains on from there. A module it
    lacks keeps its initialisation only where the stage could start without it — in the first
    stage, or one the stage starts fresh anyway (``fresh_modules``): a later stage needs what
    the earlier ones would have trained (DiffIR's stage 2 needs the stage-1 teacher CPEN_S1,
    which the authors' releases lack). Returns the modules loaded and those kept."""
    ckpt = check_init(restorer.preset, init)
    first = stages.index(stage) == 0
    fresh = restorer.fresh_modules(stage)
    renames = restorer.carried_over(stage)
    loaded, kept = [], []
    for name, module in restorer.modules().items():
        source = name if ckpt.module_state(name) else renames.get(name, name)
        if ckpt.module_state(source):
            try:
                load_modules({source: module}, ckpt)
            except CheckpointError as err:
                raise CheckpointError(f"{init}: {err}") from None
            loaded.append(name)
        elif first or name in fresh:
            kept.append(name)
        else:
            raise CheckpointError(
                f"{init}: no module {name!r}, which stage {stage!r} needs from an earlier "
                f"stage (fine-tune from stage {stages[0]!r} instead)"
            )
    if not loaded:
        raise CheckpointError(f"{init}: holds none of {restorer.preset.name}'s modules")
    return loaded, kept


def _train_stage(
    preset: Preset,
    root: Path,
    stages: list[str],
    stage: str,
    *,
    resume: bool,
    stop_at: int | None,
    log: LogFn | None,
    device: torch.device | None,
    info: Callable[[str], None] | None = None,
    overwrite: bool = False,
    init: Path | None = None,
) -> TrainResult:
    cfg = preset.train.for_stage(stage)
    out = stage_dir(root, stages, stage)
    device = rank_device(device or torch.device("cpu"))
    ctx = init_from_env(device)
    if cfg.batch % ctx.world:
        raise ValueError(f"train.batch={cfg.batch} does not split over {ctx.world} ranks")
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    restorer = build_restorer(preset)
    all_modules = restorer.modules()
    for m in all_modules.values():
        m.to(device)
    resuming = resume and _has_weights(out)
    if init is None:
        _start_from_previous_stage(root, stages, stage, restorer)
    elif not resuming:  # a resumed fine-tune's own checkpoint holds every module
        loaded, kept = start_from_checkpoint(init, stages, stage, restorer)
        if info is not None and ctx.is_main:
            fresh = f"; {', '.join(kept)} start from their initialisation" if kept else ""
            info(f"stage {stage}: {', '.join(loaded)} start from {init}{fresh}")
    # checked, now start over: no old weights beside a new, shorter log (rank 0 owns the files)
    for old in run_files(out) if overwrite and ctx.is_main else []:
        old.unlink(missing_ok=True)
    modules = restorer.trainable(stage)
    for name, m in all_modules.items():
        m.requires_grad_(name in modules)
    params = [p for m in modules.values() for p in m.parameters()]
    optimizer = build_optimizer(cfg.optimizer, params, cfg.lr, cfg.betas, cfg.weight_decay)
    emas = {name: EMA(m, cfg.ema_decay) for name, m in modules.items()} if cfg.ema_decay else {}
    out.mkdir(parents=True, exist_ok=True)
    step = _resume(out, restorer, emas, optimizer, stage) if resuming else 0
    if ctx.is_main:
        _truncate_log(out / "log.jsonl", step)
    degradation = restorer.stage_degradation(stage)
    sampler = build_sampler(
        preset, "train", batch=cfg.batch // ctx.world, cfg=cfg, degradation=degradation
    )
    validate = _Validator(preset, cfg, stage, device, degradation) if ctx.is_main else None
    end = min(cfg.iterations, stop_at) if stop_at is not None else cfg.iterations
    if info is not None and ctx.is_main:
        named = f"stage {stage}: " if len(stages) > 1 else ""
        resumed = f", resumed from step {step}" if step else ""
        info(
            f"{named}training {preset.name} steps {step + 1}..{end} of {cfg.iterations}"
            f"{resumed} on {device}; a log line every {cfg.log_every} steps"
        )
    last_val: dict[str, float] = {}
    logged_at = step  # sec_per_step divides by the steps since the previous log line
    log_file = (out / "log.jsonl").open("a") if ctx.is_main else None
    tic = time.perf_counter()
    try:
        for name, m in all_modules.items():
            m.train(name in modules)  # frozen modules stay in eval mode
        while step < end:
            lr = cosine_lr(step, cfg.iterations, cfg.lr, cfg.lr_min)
            for group in optimizer.param_groups:
                group["lr"] = lr
            g = step_generator(cfg.seed, step, ctx.rank)
            batch = sampler.sample(g).to(device)
            loss, scalars = restorer.loss(batch, g, stage)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(params, ctx)
            optimizer.step()
            for name, ema in emas.items():
                ema.update(modules[name])
            step += 1
            record: dict = {}
            if step % cfg.log_every == 0 or step == end:
                elapsed = time.perf_counter() - tic
                record = {
                    "step": step,
                    **({"stage": stage} if len(stages) > 1 else {}),
                    "lr": lr,
                    **scalars,
                    "sec_per_step": elapsed / (step - logged_at),
                }
                tic, logged_at = time.perf_counter(), step
            if ctx.active and step == end:
                record = {
                    **record,
                    "step": step,
                    "ranks": ctx.world,
                    "replicas_in_sync": replicas_in_sync(params, ctx),
                }
            if not ctx.is_main:
                continue
            if (
                validate is not None
                and cfg.val_every
                and (step % cfg.val_every == 0 or step == end)
            ):
                last_val = _validate(restorer, modules, emas, validate)
                record = {**record, "step": step, **last_val}
            if step % cfg.checkpoint_every == 0 or step == end:
                _save(out, restorer, emas, optimizer, step, stage)
            if record and log_file is not None:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                if log is not None:
                    log(record)
    finally:
        if log_file is not None:
            log_file.close()
    if ctx.is_main and not _has_weights(out):  # zero steps: still leave a checkpoint
        _save(out, restorer, emas, optimizer, step, stage)
    barrier(ctx)
    return TrainResult(weights=out / WEIGHTS_NAME, step=step, last_val=last_val)


def _has_weights(out: Path) -> bool:
    return (out / WEIGHTS_NAME).is_file()


class RunExistsError(CheckpointError):
    """The run folder holds a previous run and neither --resume nor --overwrite was given."""


def run_files(folder: Path) -> list[Path]:
    """What a stage's run leaves in its folder: weights, optimiser state, log."""
    files = (folder / WEIGHTS_NAME, state_path(folder / WEIGHTS_NAME), folder / "log.jsonl")
    return [f for f in files if f.is_file()]


def _truncate_log(path: Path, step: int) -> None:
    """Drop log records past ``step``: a run killed after its last checkpoint logged steps that
    the resumed run will log again."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
    path.write_text("".join(f"{line}\n" for line in kept))


def _validate(
    restorer: Restorer,
    modules: dict[str, nn.Module],
    emas: dict[str, EMA],
    validate: _Validator,
) -> dict[str, float]:
    for m in modules.values():
        m.eval()
    result = {"val_loss": validate(restorer)}
    if emas:
        saved = {name: _swap_weights(modules[name], ema.shadow) for name, ema in emas.items()}
        result["val_loss_ema"] = validate(restorer)
        for name, state in saved.items():
            modules[name].load_state_dict(state)
    for m in modules.values():
        m.train()
    return result
