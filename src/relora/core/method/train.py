"""The one training loop every method shares (Algorithm 1, lines 16-28).

A method only changes the init and the anchor strengths; lambda = 0 is plain
fine-tuning with the same AdamW and learning-rate schedule.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from relora.core.model.adapter import lora_parameters
from relora.core.model.data import ScoringItem, tokens_in
from relora.core.method.measures import Event
from relora.errors import TrainingDiverged, raise_if_stopped
from relora.core.math.ops import anchor_penalty, decoupled_anchor_step, scheduled_lambda, scheduled_lr
from relora.core.method.readiness import Readiness
from relora.core.model.scoring import answer_nll, evaluate


@dataclass(frozen=True)
class Schedule:
    steps: int  # E_total
    e1: int
    lr: float  # eta_1
    lr_min: float
    lambda1: float
    lambda2: float
    batch_size: int
    micro_batch_size: int
    eval_every: int
    anchor: str = "coupled"  # or "decoupled": pulled toward the init after each step, outside AdamW


@dataclass
class TrainOutcome:
    events: list[Event] = field(default_factory=list)
    steps_done: int = 0
    ready_step: int | None = None
    ready_wall_s: float | None = None
    train_s: float = 0.0
    final_correct: list[bool] = field(default_factory=list)  # per D_val example, at the last eval
    final_accuracy_norm: float | None = None  # length-normalized accuracy at the last eval
    looks_spent: bool = False  # every planned confirmation failed: training stopped, the run is not ready
    screened: int = 0  # D_val examples scored at the checkpoints
    train_examples: int = 0  # training examples through forward and backward
    train_tokens: int = 0  # their tokens (prompt and answer)


def batch_order(n: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """Seeded epochs of shuffled indices, cut into `steps` batches."""
    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    while len(order) < steps * batch_size:
        order += torch.randperm(n, generator=gen).tolist()
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(steps)]


def accumulate_gradients(
    model: torch.nn.Module, batch: list[ScoringItem], pad_id: int, micro_batch_size: int
) -> float:
    """Backward over micro-batches, normalised by the whole batch's answer tokens,
    so the summed gradient equals the full batch's (accumulation is exact)."""
    total_tokens = sum(len(it.answer) for it in batch)
    ordered = sorted(batch, key=lambda it: len(it.prompt))  # length bucketing: less padding
    loss_sum = 0.0
    for start in range(0, len(ordered), micro_batch_size):
        nll, _ = answer_nll(model, ordered[start : start + micro_batch_size], pad_id)
        (nll / total_tokens).backward()
        loss_sum += float(nll.detach())
    return loss_sum / total_tokens


@dataclass(frozen=True)
class TrainData:
    """What the loop trains on and screens on; readiness confirms on its own gate set."""

    train: list[ScoringItem]
    screen: list[ScoringItem]  # D_val: every checkpoint is scored here
    pad_id: int
    eval_batch_size: int = 16


@dataclass(frozen=True, kw_only=True)
class Watch:
    """What watches a training run: the readiness checks (None: ungated), whether a passing check ends it,
    a sink for each checkpoint's event, and the progress bar."""
    readiness: Readiness | None = None
    stop_when_ready: bool = False
    on_event: Callable[[Event], None] | None = None
    progress: bool = True


def train(model: torch.nn.Module, data: TrainData, schedule: Schedule, *, seed: int, clock_start: float,
          watch: Watch = Watch()) -> TrainOutcome:
    """Train the LoRA parameters in place; screen every k steps (and at 0 and the end) on D_val, and confirm a
    checkpoint that passes the screen on the gate set (readiness). Without stop_when_ready only the final
    adapter is confirmed."""
    readiness, stop_when_ready, on_event = watch.readiness, watch.stop_when_ready, watch.on_event
    outcome = TrainOutcome()
    started = time.perf_counter()

    def checkpoint(step: int, train_loss: float | None, final: bool) -> bool:
        res = evaluate(model, data.screen, data.pad_id, data.eval_batch_size)
        outcome.screened += len(data.screen)
        look = None
        # the bar this checkpoint must clear (it falls over the budget for a sliding screen; a zero-step budget is
        # at its end)
        bar = readiness.bar_at(step / schedule.steps if schedule.steps else 1.0) if readiness is not None else None
        if readiness is not None and outcome.ready_step is None and readiness.looks_left > 0 and (
                (stop_when_ready and res.accuracy >= bar) or (not stop_when_ready and final)):
            look = "publish" if readiness.confirm(model, step, res.accuracy, bar=bar) else "reject"
        stage = 1 if step < schedule.e1 else 2
        event = Event(step, time.perf_counter() - clock_start, stage, train_loss, res.loss, res.accuracy, look)
        outcome.events.append(event)
        outcome.final_correct, outcome.final_accuracy_norm = res.correct, res.accuracy_norm
        if on_event:
            on_event(event)
        if look == "publish":
            outcome.ready_step, outcome.ready_wall_s = step, event.wall_s
        if stop_when_ready and readiness is not None and outcome.ready_step is None and readiness.looks_left == 0:
            outcome.looks_spent = True  # no confirmation left: more training cannot make it ready
            return True
        return outcome.ready_step is not None and stop_when_ready

    if checkpoint(0, None, schedule.steps == 0) or schedule.steps == 0:
        outcome.train_s = time.perf_counter() - started
        return outcome
    params = lora_parameters(model)
    anchors = [p.detach().clone() for p in params]  # (A_init, B_init)
    optimizer = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=0.0)
    model.train()
    bar = tqdm(total=schedule.steps, desc="train", disable=not watch.progress, leave=False)
    for step, idx in enumerate(batch_order(len(data.train), schedule.batch_size, schedule.steps, seed)):
        raise_if_stopped()  # a safe point: a stop signal whose first raise was swallowed (in a __del__) ends here
        for group in optimizer.param_groups:
            group["lr"] = scheduled_lr(step, schedule.e1, schedule.steps, schedule.lr, schedule.lr_min)
        optimizer.zero_grad(set_to_none=True)
        batch = [data.train[i] for i in idx]
        outcome.train_examples += len(batch)
        outcome.train_tokens += tokens_in(batch)
        train_loss = accumulate_gradients(model, batch, data.pad_id, schedule.micro_batch_size)
        lam = scheduled_lambda(step, schedule.e1, schedule.lambda1, schedule.lambda2)
        if lam > 0 and schedule.anchor == "coupled":
            anchor_penalty(params, anchors, lam).backward()
        if not math.isfinite(train_loss):
            raise TrainingDiverged(f"loss became {train_loss} at step {step + 1}")
        optimizer.step()
        if lam > 0 and schedule.anchor == "decoupled":
            decoupled_anchor_step(params, anchors, optimizer.param_groups[0]["lr"] * lam)
        outcome.steps_done = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{train_loss:.4f}")
        done = outcome.steps_done
        if done % schedule.eval_every == 0 or done == schedule.steps:
            if checkpoint(done, train_loss, done == schedule.steps):
                break
            model.train()
    bar.close()
    model.eval()
    outcome.train_s = time.perf_counter() - started
    return outcome
