"""The training loop: AstroPT on AION tokens (the seed's recipe, made resumable).

``train(config, callbacks)`` is what the CLI, the Celery worker and the tests call.
Callbacks observe progress and may ask the loop to stop; they never reach into it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch.nn.parallel import DistributedDataParallel

from astropt.checkpoints import load_checkpoint, load_trainer_state, save_checkpoint
from astropt.codec import CodecHandle, CodecInfo, check_same_codec, load_codec
from astropt.config import TrainConfig
from astropt.data import FiniteSplit, open_split
from astropt.model import GPT, GPTConfig
from astropt.plotting import galaxy_grid, write_atomic
from astropt.run_dir import CONFIG_FILE, RunDir, checkpoint_kind, step_name
from astropt.science.readers import ModelReader
from astropt.sequences import crop_dataset, training_pair
from astropt.sequences import gpt_config as _gpt_config
from astropt.stopping import StopRequested, raise_if_stopped
from astropt.tokenise import (
    MODALITY,
    TokenCollate,
    restore_first_token,
    shift_for_training,
    tokenise_dataset,
)
from astropt.training import efficiency
from astropt.training.attempts import AttemptLog
from astropt.training.batches import FixedBatches, StreamBatches, TokenBatches
from astropt.training.callbacks import TrainCallback, TrainResult, TrainStatus
from astropt.training.guards import Diverged, check_finite, check_weights
from astropt.training.live_probe import PREFIX, LiveProbe, metric_names
from astropt.training.run_log import RunLog
from astropt.training.runtime import (
    Runtime,
    main_rank_first,
    rng_state,
    set_rng_state,
    setup_runtime,
    teardown_runtime,
)
from astropt.training.schedule import learning_rate, unigram_entropy
from astropt.training.warm_start import load_init_weights, with_init_shape

UNIGRAM_ROWS = 50_000  # training rows of a token data set the unigram entropy is estimated from


class _InfoOnly:
    """A codec's identity where no codec is loaded (training from tokens): what warm starts check."""

    def __init__(self, info: CodecInfo):
        self.info = info


def gpt_config(config: TrainConfig) -> GPTConfig:
    return _gpt_config(config)


def train(
    config: TrainConfig, callbacks: Sequence[TrainCallback] = (), resume: bool = True
) -> TrainResult:
    config = with_init_shape(config, resume)  # init_from: the checkpoint's model shape
    runtime = setup_runtime(config)
    try:
        return _Trainer(config, runtime, list(callbacks) if runtime.is_main else []).run(resume)
    finally:
        teardown_runtime(runtime)


class _Trainer:
    # set up by _run (codec_info by _token_data when training from tokens)
    codec_info: CodecInfo | None
    codec: CodecHandle | None
    model: GPT
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    attempts: AttemptLog | None

    def __init__(self, config: TrainConfig, runtime: Runtime, callbacks: list[TrainCallback]):
        self.cfg, self.rt, self.callbacks = config, runtime, callbacks
        self.out = Path(config.out_dir)
        self.run_dir = RunDir(self.out)
        self.accum = config.grad_accum
        self.best: float | None = None
        self.iter_num = 0
        self.init_record: dict[str, Any] | None = (
            None  # what init_from loaded (the run's, on resume)
        )
        self.live_probe: LiveProbe | None = None
        # Data preparation and evaluation run on the main rank alone, so only a one-process run
        # may leave them early; DDP ranks agree on stopping between (micro-)steps instead.
        self.local_stop = None if runtime.ddp else self._callbacks_stop

    def _callbacks_stop(self) -> bool:
        return any(cb.should_stop() for cb in self.callbacks)

    # -- setup ---------------------------------------------------------------
    def _data(self, codec: CodecHandle | None) -> dict[str, Any]:
        cfg, rt = self.cfg, self.rt
        stop = self.local_stop
        if cfg.data.source == "tokens":
            return self._token_data(cfg.data.path)
        if (
            cfg.data.source == "hf"
            and cfg.data.streaming
            and cfg.data.cache_tokens
            and cfg.model.tokeniser == "aion"
        ):
            assert codec is not None  # an AION model not trained from tokens: _run loaded its codec
            return self._token_data(
                str(self._tokenise_stream(codec))
            )  # write-through: the codec runs once
        train = open_split(
            cfg.data, "train", rank=rt.rank, world_size=rt.world_size, seed=cfg.seed, stop=stop
        )
        val = open_split(cfg.data, "val", seed=cfg.seed, stop=stop)
        info: dict[str, Any] = {}
        finite = hasattr(train, "__len__") and hasattr(train, "__getitem__")
        if cfg.model.tokeniser == "patch":
            if not finite:
                raise ValueError(
                    "tokeniser 'patch' needs a finite data set (mock or local); "
                    "streamed sources are AION-only for now"
                )
            assert isinstance(train, FiniteSplit) and isinstance(
                val, FiniteSplit
            )  # one source: both
            train_crops, val_crops = crop_dataset(train), crop_dataset(val)
            info.update(n_train=len(train), n_val=len(val))
            self._write_data_manifest(train)
            if cfg.live_probe is not None and rt.is_main:
                self.live_probe = LiveProbe.prepare(
                    cfg, val, val_crops, ModelReader("patch", patch=cfg.model)
                )
            b = cfg.batch_size
            return {
                "train": TokenBatches(train_crops, b, cfg.seed + 7919 * rt.rank),
                "train_eval": TokenBatches(train_crops, b, cfg.seed + 1, shuffle=True),
                "val_eval": TokenBatches(val_crops, b, cfg.seed, shuffle=False),
                "info": info,
            }
        assert codec is not None  # an AION model not trained from tokens: _run loaded its codec
        collate = TokenCollate(codec, cfg.data.bands)
        if hasattr(train, "__len__") and hasattr(train, "__getitem__") and cfg.data.cache_tokens:
            assert isinstance(train, FiniteSplit) and isinstance(
                val, FiniteSplit
            )  # one source: both
            kw: dict[str, Any] = {"bands": cfg.data.bands, "progress": rt.is_main, "stop": stop}
            train_tokens = tokenise_dataset(train, codec, **kw)  # each rank its own shard
            with main_rank_first(
                rt
            ):  # the shared split: rank 0 fills the cache, the others read it
                val_tokens = tokenise_dataset(val, codec, **kw)
            info.update(
                n_train=len(train),
                n_val=len(val),
                unigram_entropy=unigram_entropy(train_tokens, cfg.model.vocab_size),
            )
            self._write_data_manifest(train)
            if cfg.live_probe is not None and rt.is_main:
                self.live_probe = LiveProbe.prepare(
                    cfg, val, val_tokens, ModelReader("aion", codec=codec)
                )
            b = cfg.batch_size
            return {
                "train": TokenBatches(train_tokens, b, cfg.seed + 7919 * rt.rank),
                "train_eval": TokenBatches(train_tokens, b, cfg.seed + 1, shuffle=True),
                "val_eval": TokenBatches(val_tokens, b, cfg.seed, shuffle=False),
                "info": info,
            }
        return {
            "train": StreamBatches(lambda: train, collate, cfg.batch_size),
            "train_eval": StreamBatches(lambda: train, collate, cfg.batch_size),
            "val_eval": StreamBatches(lambda: val, collate, cfg.batch_size),
            "info": info,
        }

    def _tokenise_stream(self, codec: CodecHandle) -> Path:
        """The token data set of a streamed source, made on first use (every rank its part)."""
        from astropt.tokens import TokeniseConfig, tokenise
        from astropt.tokens.cache import is_complete, stream_cache_dir

        cfg, rt = self.cfg, self.rt
        out = stream_cache_dir(cfg.data, codec.info.fingerprint)
        if not is_complete(out):
            tokenise(
                TokeniseConfig(
                    data=cfg.data,
                    codec=cfg.codec,
                    out_dir=str(out),
                    device=str(rt.device),
                    rank=rt.rank,
                    world_size=rt.world_size,
                ),
                stop=self.local_stop,
                progress=rt.is_main,
            )
            if rt.ddp:  # the last rank to finish writes the manifest
                torch.distributed.barrier()
        return out

    def _token_data(self, path: str | None) -> dict[str, Any]:
        """A token data set: no codec, rows read per batch (memory flat in the data set size)."""
        from astropt.tokens.splits import codec_info, open_for_training, split_rows

        cfg, rt = self.cfg, self.rt
        dataset = open_for_training(path, cfg.codec)
        self.codec_info = codec_info(dataset)
        train = split_rows(dataset, "train", cfg.data.val_fraction, rt.rank, rt.world_size)
        val = split_rows(dataset, "val", cfg.data.val_fraction)
        self._write_data_manifest(train)
        b = cfg.batch_size
        info = {
            "n_train": len(train),
            "n_val": len(val),
            "token_dataset": str(dataset.path),
            "unigram_entropy": unigram_entropy(train.head(UNIGRAM_ROWS), cfg.model.vocab_size),
        }
        return {
            "train": TokenBatches(train, b, cfg.seed + 7919 * rt.rank),
            "train_eval": TokenBatches(train, b, cfg.seed + 1, shuffle=True),
            "val_eval": TokenBatches(val, b, cfg.seed, shuffle=False),
            "info": info,
        }

    def _image_codec(self) -> CodecHandle:
        """The codec that draws validation images: loaded on first use when training from tokens,
        and then it must be the token data set's."""
        if self.codec is None:
            assert self.codec_info is not None  # training from tokens: _token_data recorded it
            spec = self.cfg.codec if self.cfg.codec != "default" else self.codec_info.spec
            codec = load_codec(spec, device=self.rt.device)
            check_same_codec(self.codec_info, codec.info, "the token data set")
            self.codec = codec
        return self.codec

    def _write_data_manifest(self, split: Any, streamed_ids: list[str] | None = None) -> None:
        if split is None:  # a stream: the ids this attempt trained on
            assert streamed_ids is not None
            record = {
                "rank": self.rt.rank,
                "n": len(streamed_ids),
                "fingerprint": None,
                "object_ids": streamed_ids,
                "streamed": True,
            }
        else:
            ids = getattr(split, "object_ids", None)
            record = {
                "rank": self.rt.rank,
                "n": len(split),
                "fingerprint": getattr(split, "fingerprint", None),
                "object_ids": list(ids) if ids is not None else None,
            }
        self.out.mkdir(parents=True, exist_ok=True)
        write_atomic(self.out / f"data_rank{self.rt.rank}.json", json.dumps(record).encode())

    def _restore(
        self, model: GPT, codec: CodecInfo | None
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        last = self.run_dir.checkpoint("last")
        if not (last / CONFIG_FILE).is_file():
            return None, {}
        loaded, meta = load_checkpoint(last, device="cpu")
        if codec is not None:
            check_same_codec(meta.get("codec", {}), codec, f"checkpoint {last}")
        model.load_state_dict(loaded.state_dict())
        return load_trainer_state(last), meta

    # -- the loop ------------------------------------------------------------
    def run(self, resume: bool) -> TrainResult:
        self.iter_num = (
            (self.run_dir.last_step() or 0) if resume else 0
        )  # until a checkpoint says more
        try:
            status = self._run(resume)
        except StopRequested:  # during data preparation: nothing trained, nothing to save
            status = "stopped"
        except Diverged as exc:  # the last finite checkpoint stays; no metric of the bad step
            return TrainResult("diverged", self.iter_num, self.best, str(self.out), reason=str(exc))
        return TrainResult(status, self.iter_num, self.best, str(self.out))

    def _run(self, resume: bool) -> TrainStatus:
        cfg, rt = self.cfg, self.rt
        torch.manual_seed(cfg.seed + rt.rank)
        from_tokens = cfg.data.source == "tokens"  # no codec: the tokens are read (see _token_data)
        codec = (
            load_codec(cfg.codec, device=rt.device)
            if cfg.model.tokeniser == "aion" and not from_tokens
            else None
        )
        self.codec_info = codec.info if codec is not None else None
        data = self._data(codec)
        # The weights must not depend on what ran before (loading a codec draws from the global
        # generator unless it was cached in this process): the same seed, the same model.
        torch.manual_seed(cfg.seed + rt.rank)
        model = GPT(gpt_config(cfg))
        state, meta = self._restore(model, self.codec_info) if resume else (None, {})
        if state is None and cfg.init_from:  # a warm start; a resumed run has its own weights
            identity = (
                codec
                if codec is not None
                else _InfoOnly(self.codec_info)
                if self.codec_info
                else None
            )
            self.init_record = load_init_weights(model, cfg, identity)
        elif state is not None:
            self.init_record = meta.get("init_from")
        model.to(rt.device)
        optimizer = model.configure_optimizers(
            cfg.optim.weight_decay,
            cfg.optim.learning_rate,
            (cfg.optim.beta1, cfg.optim.beta2),
            rt.device_type,
        )
        scaler = torch.amp.GradScaler(rt.device_type, enabled=rt.needs_scaler)
        start, best = 0, None
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"], rt.device)
            start, best = int(state["iter_num"]), state.get("best_val_loss")
        self.model, self.codec, self.optimizer, self.scaler = model, codec, optimizer, scaler
        self.best = best
        # torch.compile's stubs say Callable; given a module it returns one (OptimizedModule)
        net = cast(torch.nn.Module, torch.compile(model)) if rt.compile else model
        if rt.ddp:
            net = DistributedDataParallel(
                net, device_ids=[rt.local_rank] if rt.device_type == "cuda" else None
            )
        self.net = net
        self.eval_sets = {
            "train": FixedBatches(data["train_eval"], cfg.eval_iters),
            "val": FixedBatches(data["val_eval"], cfg.eval_iters),
        }
        log = RunLog(self.out, start, metric_names(cfg.live_probe)) if rt.is_main else None
        self.attempts = AttemptLog(self.out, start, state is not None) if rt.is_main else None
        self.flops_per_token = efficiency.flops_per_token(
            model.get_num_params(), cfg.model.n_layer, cfg.model.n_embd, cfg.model.n_positions
        )
        self.peak = efficiency.device_peak(rt.device, rt.dtype)
        self.effective_batch = cfg.batch_size * self.accum * rt.world_size
        if rt.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_atomic(self.run_dir.config_yaml, cfg.to_yaml().encode())
            info = {
                **rt.describe(),
                **data["info"],
                "codec": self.codec_info.to_dict() if self.codec_info else None,
                "n_params": model.get_num_params(),
                "start_iter": start,
                "max_iters": cfg.max_iters,
                "out_dir": str(self.out),
                "resumed": state is not None,
                "init_from": self.init_record,
                "effective_batch_size": self.effective_batch,
                "flops_per_token": self.flops_per_token,
                "peak": self.peak.describe(),
                "peak_flops": self.peak.flops,
            }
            for cb in self.callbacks:
                cb.on_start(info)
        return self._loop(data["train"], start, log)

    def _loop(
        self, batches: TokenBatches | StreamBatches, start: int, log: RunLog | None
    ) -> TrainStatus:
        cfg, rt = self.cfg, self.rt
        self.iter_num = start
        seen = cfg.model.n_positions - (1 if cfg.model.objective == "ar" else 0)
        tokens_per_step = cfg.batch_size * self.accum * seen * rt.world_size
        status: TrainStatus = "completed"
        try:
            if start == 0 and rt.is_main:
                assert log is not None  # the main rank keeps the log
                self._evaluate(log)  # the baseline: ~ln(vocab) untrained, the init's loss warm
            self.net.train()
            while self.iter_num < cfg.max_iters:
                if self._should_stop():
                    status = "stopped"
                    break
                self._step(batches, tokens_per_step, log)
        except StopRequested:  # inside a step's micro-batches or an evaluation
            status = "stopped"
            self.optimizer.zero_grad(set_to_none=True)  # a partial accumulation is dropped
        if rt.is_main:
            self._save("last")
        if isinstance(batches, StreamBatches):  # what the finite path records up front
            self._write_data_manifest(None, sorted(batches.seen_ids))
        return status

    def _step(
        self, batches: TokenBatches | StreamBatches, tokens_per_step: int, log: RunLog | None
    ) -> None:
        cfg, rt = self.cfg, self.rt
        t0 = time.perf_counter()
        lr = learning_rate(self.iter_num, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        train_loss = self._accumulate(batches) / self.accum
        self._check_loss(train_loss)
        if cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.iter_num += 1
        dt = time.perf_counter() - t0
        if not rt.is_main:
            return
        assert self.attempts is not None and log is not None  # the main rank keeps both
        self.attempts.stepped(self.iter_num)
        metrics = {
            "train_loss": train_loss,
            "lr": lr,
            "tokens_per_s": tokens_per_step / max(dt, 1e-9),
            "iter_time_s": dt,
            **self._efficiency(tokens_per_step / max(dt, 1e-9)),
        }
        if self.iter_num % cfg.log_interval == 0 or self.iter_num == 1:
            log.add(
                self.iter_num,
                train_loss=metrics["train_loss"],
                lr=lr,
                tokens_per_s=metrics["tokens_per_s"],
                **{
                    k: metrics[k]
                    for k in ("mfu", "effective_batch_size")
                    if metrics.get(k) is not None
                },
            )
            for cb in self.callbacks:
                cb.on_log(self.iter_num, metrics)
        if self.iter_num % cfg.eval_interval == 0 or self.iter_num == cfg.max_iters:
            self._evaluate(log)
        if cfg.checkpoint_interval and self.iter_num % cfg.checkpoint_interval == 0:
            self._save("last")
            self._save(step_name(self.iter_num))

    def _accumulate(self, batches: TokenBatches | StreamBatches) -> float:
        """Forward and backward over the step's micro-batches; the sum of their losses."""
        cfg, rt = self.cfg, self.rt
        loss_sum = 0.0
        for micro in range(self.accum):
            if micro and self._should_stop():  # a long accumulation is no reason to wait
                raise StopRequested("stopped between micro-steps")
            index = self.iter_num * self.accum + micro
            tokens = batches.batch(index).to(rt.device, non_blocking=True)
            inputs, targets, masks = training_pair(tokens, cfg.model, index, cfg.seed)
            if rt.ddp:
                cast(DistributedDataParallel, self.net).require_backward_grad_sync = (
                    micro == self.accum - 1
                )
            with rt.autocast():
                _, loss = self.net(inputs, targets, masks)
            loss_sum += loss.item()
            self.scaler.scale(loss / self.accum).backward()
        return loss_sum

    def _check_loss(self, loss: float) -> None:
        """Before the optimiser step: a non-finite loss on any rank ends the run on all."""
        bad = not math.isfinite(loss)
        if self.rt.ddp:
            flag = torch.tensor([float(bad)], device=self.rt.device)
            torch.distributed.all_reduce(flag)
            bad = bool(flag.item() > 0)
        if bad:
            raise Diverged(self.iter_num + 1, "loss", loss if not math.isfinite(loss) else math.nan)

    def _efficiency(self, tokens_per_s: float) -> dict[str, float]:
        out = {
            "model_flops_per_s": tokens_per_s * self.flops_per_token,
            "effective_batch_size": float(self.effective_batch),
        }
        mfu = efficiency.mfu(tokens_per_s, self.flops_per_token, self.peak, self.rt.world_size)
        if mfu is not None:
            out["mfu"] = mfu
        memory = efficiency.gpu_memory_peak(self.rt.device)
        if memory is not None:
            out["gpu_memory_peak_bytes"] = float(memory)
        return out

    def _should_stop(self) -> bool:
        stop = any(cb.should_stop() for cb in self.callbacks)
        if self.rt.ddp:  # every rank must leave the loop at the same step
            flag = torch.tensor([float(stop)], device=self.rt.device)
            torch.distributed.all_reduce(flag)
            stop = bool(flag.item() > 0)
        return stop

    @torch.no_grad()
    def _estimate(self) -> dict[str, float]:
        self.net.eval()
        out = {}
        for name, fixed in self.eval_sets.items():
            losses = []
            for i, tokens in enumerate(fixed):
                raise_if_stopped(self.local_stop, "evaluating")
                inputs, targets, masks = training_pair(
                    tokens.to(self.rt.device), self.cfg.model, i, -1
                )
                with self.rt.autocast():
                    _, loss = self.model(inputs, targets, masks)
                losses.append(loss.item())
            out[f"{name}_loss"] = sum(losses) / len(losses)
        self.net.train()
        return out

    def _evaluate(self, log: RunLog) -> None:
        metrics = self._estimate()
        for name in ("val_loss", "train_loss"):
            check_finite(self.iter_num, name, metrics[name])
        if self.live_probe is not None and self.live_probe.due(self.iter_num):
            metrics.update(self.live_probe.run(self.model, self.rt.dtype, self.local_stop))
        probes = {k: v for k, v in metrics.items() if k.startswith(PREFIX)}
        log.add(
            self.iter_num,
            val_loss=metrics["val_loss"],
            eval_train_loss=metrics["train_loss"],
            **probes,
        )
        log.write_plot()
        for cb in self.callbacks:
            cb.on_eval(self.iter_num, metrics)
        if self.best is None or metrics["val_loss"] < self.best:
            self.best = metrics["val_loss"]
            self._save("best")
        if self.cfg.n_val_images:
            self._val_images()

    @torch.no_grad()
    def _val_images(self) -> None:
        if self.cfg.model.tokeniser == "patch":
            return self._val_patch_images()
        codec = self._image_codec()
        tokens = torch.cat(list(self.eval_sets["val"]))[: self.cfg.n_val_images].to(self.rt.device)
        inputs, _ = shift_for_training(tokens)
        self.model.eval()
        with self.rt.autocast():
            logits, _ = self.model(inputs)
        self.model.train()
        predicted = restore_first_token(logits[MODALITY].argmax(-1), tokens[:, 0])
        bands = self.cfg.data.bands
        target_flux = codec.decode(tokens.cpu(), bands).numpy()
        pred_flux = codec.decode(predicted.cpu(), bands).numpy()
        png = galaxy_grid(
            list(zip(target_flux, pred_flux, strict=True)), ["codec tokens", "model prediction"]
        )
        path = self.run_dir.val_image(self.iter_num)
        write_atomic(path, png)
        for cb in self.callbacks:
            cb.on_val_images(self.iter_num, str(path))

    def _val_patch_images(self) -> None:
        from astropt.sequences import predicted_images

        crops = torch.cat(list(self.eval_sets["val"]))[: self.cfg.n_val_images].to(self.rt.device)
        self.model.eval()
        with self.rt.autocast():
            predicted = predicted_images(self.model, crops, self.cfg.model)
        self.model.train()
        pairs = list(zip(crops.cpu().numpy(), predicted.numpy(), strict=True))
        png = galaxy_grid(pairs, ["flux crop", "model prediction"])
        path = self.run_dir.val_image(self.iter_num)
        write_atomic(path, png)
        for cb in self.callbacks:
            cb.on_val_images(self.iter_num, str(path))

    def _save(self, name: str) -> None:
        check_weights(
            self.iter_num, self.model
        )  # a checkpoint is never written with nan/inf weights
        path = self.run_dir.checkpoint(name)
        meta = {
            "codec": self.codec_info.to_dict() if self.codec_info else None,
            "tokeniser": self.cfg.model.tokeniser,
            "step": self.iter_num,
            "best_val_loss": self.best,
            "train_config": self.cfg.model_dump(mode="json"),
            "runtime": self.rt.describe(),
            "init_from": self.init_record,
        }
        trainer_state = {
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(self.rt.device),
            "iter_num": self.iter_num,
            "best_val_loss": self.best,
        }
        save_checkpoint(path, self.model, meta=meta, trainer_state=trainer_state)
        if name == "last":
            assert self.attempts is not None  # only the main rank saves
            self.attempts.checkpointed(self.iter_num)
        for cb in self.callbacks:
            cb.on_checkpoint(self.iter_num, str(path), checkpoint_kind(name))
