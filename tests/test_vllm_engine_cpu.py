"""The vLLM backend on CPU, against a stand-in `vllm` package shaped like the real offline API.

The stand-in is written to a directory on sys.path, so spawned replica processes import it too. Its
`LLM` starts an engine-core child process as vLLM's V1 engine does (which a daemonic process may not
have), records the SamplingParams it gets, and answers in vLLM's output shape. Environment variables
make a replica die during start-up or in the middle of a call (as one the OOM killer ends does), or
stay in LLM() for good (as one loading a large model does).
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from humpback import ledger
from humpback.engines.base import EngineError, Sampling
from humpback.engines.config import EngineConfig
from humpback.engines.prompting import choice_plan, logsumexp
from humpback.errors import ConfigError
from humpback.prompts import chat

SRC = Path(__file__).resolve().parents[1] / "src"

FAKE_VLLM = '''
"""A stand-in for vllm's offline API: LLM, SamplingParams, LoRARequest, outputs in vLLM's shape."""

import multiprocessing
import os
import signal
import time
import weakref
from types import SimpleNamespace

# The EngineArgs this backend may pass; the real LLM rejects a misspelt one too.
ENGINE_ARGS = {"model", "tensor_parallel_size", "gpu_memory_utilization", "enable_prefix_caching",
               "enforce_eager", "max_model_len", "enable_lora", "max_lora_rank", "max_loras", "dtype",
               "max_logprobs", "seed"}
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
FILLER = list(range(5000, 5030))  # the tokens this "model" likes best; no choice token is among them


def exact_logprob(token_id):
    return -6.0 - (token_id % 7) * 0.25


class SamplingParams:
    """Keyword-only like the msgspec Struct it stands for, which lists its fields in __struct_fields__."""

    __struct_fields__ = ("n", "temperature", "top_p", "seed", "max_tokens", "logprobs", "logprob_token_ids")

    def __init__(self, **kwargs):
        unknown = sorted(set(kwargs) - set(type(self).__struct_fields__))
        if unknown:
            raise TypeError(f"Unexpected keyword argument {unknown[0]!r}")
        defaults = dict(n=1, temperature=1.0, top_p=1.0, seed=None, max_tokens=16, logprobs=None,
                        logprob_token_ids=None)
        for name, default in defaults.items():
            setattr(self, name, kwargs.get(name, default))
        if self.logprobs is not None and self.logprobs > 20:
            raise ValueError("Requested sample logprobs of more than max allowed: 20")


class Logprob:
    def __init__(self, logprob, rank=None):
        self.logprob, self.rank = logprob, rank


def _dies_at(point):
    flag = os.environ.get("FAKE_VLLM_DIE_FLAG")
    return (os.environ.get("FAKE_VLLM_DIE_AT") == point
            and os.environ.get("FAKE_VLLM_DIE_GPU") == os.environ.get("CUDA_VISIBLE_DEVICES")
            and (not flag or os.path.exists(flag)))


def _engine_core(r, w):
    w.close()
    try:
        r.recv()  # until the engine process that started it is gone
    except EOFError:
        pass


def _stop_core(core, pipe):
    pipe.close()
    core.join(timeout=10)
    pids = os.environ.get("FAKE_VLLM_PIDS")
    if pids:
        open(os.path.join(pids, f"stopped.{core.pid}"), "w").close()


class LLM:
    instances = 0
    calls = []  # (prompts, sampling_params, kwargs) of every generate call in this process
    top_ids = FILLER

    def __init__(self, model, **kwargs):
        unknown = sorted(set(kwargs) - ENGINE_ARGS)
        if unknown:
            raise TypeError(f"EngineArgs.__init__() got an unexpected keyword argument {unknown[0]!r}")
        if kwargs.get("enable_lora") and kwargs.get("max_lora_rank") not in LORA_RANKS:
            raise ValueError(f"max_lora_rank must be one of {LORA_RANKS}")
        if _dies_at("init"):
            os._exit(7)
        # vLLM V1 runs its engine core in a child process; Process.start() refuses inside a daemon.
        ctx = multiprocessing.get_context("fork")
        r, w = ctx.Pipe(duplex=False)
        self._core = ctx.Process(target=_engine_core, args=(r, w), name="EngineCore_DP0")
        self._core.start()
        r.close()
        # as vLLM does: the engine core is stopped when the LLM is collected or at interpreter exit
        weakref.finalize(self, _stop_core, self._core, w)
        pids = os.environ.get("FAKE_VLLM_PIDS")
        if pids:
            with open(os.path.join(pids, f"{os.getpid()}-{self._core.pid}"), "w") as f:
                f.write(os.environ.get("CUDA_VISIBLE_DEVICES", ""))
        hang = os.environ.get("FAKE_VLLM_HANG_GPU")
        if hang is not None and hang == os.environ.get("CUDA_VISIBLE_DEVICES"):
            open(os.environ["FAKE_VLLM_HANG_FLAG"], "w").close()
            while True:  # loading forever, engine core started
                time.sleep(1)
        self.model_config = SimpleNamespace(max_model_len=kwargs.get("max_model_len") or 2048)
        self.kwargs = dict(kwargs, model=model)
        type(self).instances += 1

    def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None, priority=None,
                 tokenization_kwargs=None):
        if _dies_at("generate"):
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer does
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError("The lengths of prompts and sampling_params must be the same.")
        type(self).calls.append((prompts, sampling_params, dict(use_tqdm=use_tqdm, lora_request=lora_request)))
        return [self._answer(p, sp) for p, sp in zip(prompts, params)]

    def _answer(self, prompt, sp):
        ids = prompt["prompt_token_ids"]
        sampled = type(self).top_ids[0]
        logprobs = None
        if sp.logprob_token_ids:
            step = {t: Logprob(exact_logprob(t)) for t in sp.logprob_token_ids}
            step[sampled] = Logprob(-0.5, rank=1)
            logprobs = [step]
        elif sp.logprobs:
            logprobs = [{t: Logprob(-0.5 - k * 0.01, rank=k + 1)
                         for k, t in enumerate(type(self).top_ids[: sp.logprobs])}]
        text = f" reply {sum(ids) % 100003} seed {sp.seed} "
        # a reply of 1 to 5 tokens (within max_tokens), varying with the prompt
        token_ids = [sampled] * min(sp.max_tokens, 1 + sum(ids) % 5)
        return SimpleNamespace(prompt_token_ids=ids,
                               outputs=[SimpleNamespace(text=text, logprobs=logprobs, token_ids=token_ids)])

'''

FAKE_LORA = '''
class LoRARequest:
    def __init__(self, lora_name, lora_int_id, lora_path=""):
        self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path
'''


@pytest.fixture(scope="module")
def fake_vllm(tmp_path_factory):
    """The stand-in package on sys.path (spawned children get the parent's sys.path)."""
    root = tmp_path_factory.mktemp("fake_vllm")
    (root / "vllm" / "lora").mkdir(parents=True)
    (root / "vllm" / "__init__.py").write_text(FAKE_VLLM)
    (root / "vllm" / "lora" / "__init__.py").write_text("")
    (root / "vllm" / "lora" / "request.py").write_text(FAKE_LORA)
    sys.path.insert(0, str(root))
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        del sys.modules[name]
    import vllm

    yield vllm
    sys.path.remove(str(root))
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        del sys.modules[name]


@pytest.fixture
def llm(fake_vllm, monkeypatch):
    """The stand-in's LLM with a fresh call log."""
    monkeypatch.setattr(fake_vllm.LLM, "calls", [])
    monkeypatch.setattr(fake_vllm.LLM, "instances", 0)
    return fake_vllm.LLM


@pytest.fixture
def two_gpus(fake_vllm, monkeypatch, tmp_path):
    """Two "GPUs" for the replicas, a clean death setup, and a folder where each LLM leaves its pids."""
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for var in ("FAKE_VLLM_DIE_AT", "FAKE_VLLM_DIE_GPU", "FAKE_VLLM_DIE_FLAG", "FAKE_VLLM_HANG_GPU"):
        monkeypatch.delenv(var, raising=False)
    pids = tmp_path / "pids"
    pids.mkdir()
    monkeypatch.setenv("FAKE_VLLM_PIDS", str(pids))
    yield pids
    for child in mp.active_children():  # a test that failed part-way leaves nothing running
        child.kill()
        child.join(timeout=10)


def within(seconds: float, fn, *args):
    """fn(*args), or a failure after `seconds`: a hang must fail the test, not stall the suite."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # handed to the test thread
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        for child in mp.active_children():
            child.kill()
        pytest.fail(f"{getattr(fn, '__name__', fn)} still running after {seconds} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def gone(pid: int) -> bool:
    """No such process any more (a zombie counts as gone: it holds nothing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def wait_gone(pids: list[int], seconds: float = 20) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not all(gone(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if not gone(p)]


def all_pids(folder: Path) -> list[int]:
    """The replicas' and their engine cores' pids, from the files "<replica>-<core>" the stand-in leaves."""
    return [int(p) for f in folder.iterdir() if "-" in f.name for p in f.name.split("-")]


def cores(folder: Path) -> dict[str, int]:
    """GPU -> the pid of the engine core started there."""
    return {f.read_text(): int(f.name.split("-")[1]) for f in folder.iterdir() if "-" in f.name}


def cfg(**vllm) -> EngineConfig:
    c = EngineConfig(backend="vllm", max_input_tokens=256)
    for k, v in vllm.items():
        setattr(c.vllm, k, v)
    return c


REQUESTS = [chat(f"Say the number {i}.") for i in range(5)]
SAMPLED = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=8, seed=11)


# -- data-parallel replicas: real processes ---------------------------------------------------------


def test_replicas_start_although_vllm_starts_a_child_and_answer_in_order(two_gpus, tiny_model_dir, llm):
    """A daemonic replica could not start vLLM's engine core; the answers come back in request order,
    each sampled with the seed of its place in the whole call, as one engine would; close() leaves no
    process behind, engine cores included."""
    from humpback.engines.vllm_engine import LocalVLLM, ReplicatedVLLM

    engine = within(120, ReplicatedVLLM, tiny_model_dir, cfg(data_parallel_size=2))
    try:
        procs = [p for p, _ in engine.workers]
        assert not any(p.daemon for p in procs)
        before = ledger.snapshot()
        out = within(60, engine.generate, REQUESTS, SAMPLED)
        counted = ledger.snapshot().minus(before)
    finally:
        within(90, engine.close)
    assert all(p.exitcode is not None for p in procs)
    assert sorted(cores(two_gpus)) == ["0", "1"]  # one LLM (and engine core) per replica, on its own GPU
    assert wait_gone(all_pids(two_gpus)) == []
    assert all((two_gpus / f"stopped.{pid}").exists() for pid in cores(two_gpus).values())
    before = ledger.snapshot()
    with LocalVLLM(tiny_model_dir, cfg()) as one:
        assert out == one.generate(REQUESTS, SAMPLED)
    # the replicas' counts came back with their answers: the same as one engine's, counted once
    assert counted == ledger.snapshot().minus(before) and counted.examples == len(REQUESTS)
    assert counted.tokens_out > len(REQUESTS)


def test_a_replica_killed_mid_call_is_an_engine_error_keeping_the_others_answers(
        two_gpus, tiny_model_dir, llm, monkeypatch, tmp_path):
    """Replica 1 is SIGKILLed inside generate: the call ends at once with an EngineError naming it and
    how it ended, replica 0's answers in `partial`; later calls say so without waiting on it."""
    from humpback.engines.vllm_engine import LocalVLLM, ReplicatedVLLM

    flag = tmp_path / "die-now"
    monkeypatch.setenv("FAKE_VLLM_DIE_AT", "generate")
    monkeypatch.setenv("FAKE_VLLM_DIE_GPU", "1")
    monkeypatch.setenv("FAKE_VLLM_DIE_FLAG", str(flag))
    engine = within(120, ReplicatedVLLM, tiny_model_dir, cfg(data_parallel_size=2))
    try:
        first = within(60, engine.generate, REQUESTS, SAMPLED)
        flag.touch()
        started = time.monotonic()
        with pytest.raises(EngineError) as e:
            within(60, engine.generate, REQUESTS, SAMPLED)
        assert time.monotonic() - started < 30
        assert "replica 1" in str(e.value) and "exit code -9" in str(e.value), str(e.value)
        assert "replica 0" not in str(e.value)
        assert e.value.partial == [first[i] if i % 2 == 0 else None for i in range(len(REQUESTS))]
        with pytest.raises(EngineError, match="replica 1: died earlier") as again:
            within(30, engine.generate, REQUESTS, SAMPLED)
        assert again.value.done == 3
    finally:
        within(90, engine.close)
    assert wait_gone(all_pids(two_gpus)) == []
    with LocalVLLM(tiny_model_dir, cfg()) as one:
        assert first == one.generate(REQUESTS, SAMPLED)


def test_a_terminated_replica_exits_through_vllm_s_own_shutdown(two_gpus, tiny_model_dir, llm):
    """terminate() (close() does it to a replica that does not stop in time) lets the replica run its
    exit hooks, which stop vLLM's engine core; the next call names the replica and its exit code."""
    from humpback.engines.vllm_engine import ReplicatedVLLM

    engine = within(120, ReplicatedVLLM, tiny_model_dir, cfg(data_parallel_size=2))
    try:
        proc = engine.workers[1][0]
        proc.terminate()
        proc.join(timeout=30)
        assert proc.exitcode == 143
        assert (two_gpus / f"stopped.{cores(two_gpus)['1']}").exists()
        with pytest.raises(EngineError, match="replica 1: died [(]exit code 143[)]") as e:
            within(60, engine.generate, REQUESTS, SAMPLED)
        assert e.value.done == 3
    finally:
        within(90, engine.close)
    assert wait_gone(all_pids(two_gpus)) == []


def test_a_replica_terminated_while_loading_still_stops_its_engine_core(
        two_gpus, tiny_model_dir, monkeypatch, tmp_path):
    """SIGTERM in the middle of LLM(): the half-built engine is only referenced from the frames being
    unwound; the replica lets go of it and vLLM's finalizer stops the engine core, so the replica ends
    (multiprocessing's exit would otherwise wait on that core forever) and start-up reports it."""
    from humpback.engines.vllm_engine import ReplicatedVLLM

    flag = tmp_path / "loading"
    monkeypatch.setenv("FAKE_VLLM_HANG_GPU", "1")
    monkeypatch.setenv("FAKE_VLLM_HANG_FLAG", str(flag))
    box: dict = {}

    def start():
        try:
            ReplicatedVLLM(tiny_model_dir, cfg(data_parallel_size=2))
        except EngineError as e:
            box["error"] = e

    t = threading.Thread(target=start, daemon=True)
    t.start()
    deadline = time.monotonic() + 120
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert flag.exists(), "replica 1 never reached LLM()"
    (replica,) = [p for p in mp.active_children() if p.name == "vllm-replica-1"]
    replica.terminate()
    t.join(60)
    if t.is_alive():
        for child in mp.active_children():
            child.kill()
        pytest.fail("start-up still waiting on a terminated replica")
    assert "replica 1 failed to start: died (exit code 143)" in str(box["error"])
    assert (two_gpus / f"stopped.{cores(two_gpus)['1']}").exists()
    assert mp.active_children() == []
    assert wait_gone(all_pids(two_gpus)) == []


def test_a_replica_that_dies_during_start_up_is_reported_and_the_others_stopped(
        two_gpus, tiny_model_dir, monkeypatch):
    from humpback.engines.vllm_engine import ReplicatedVLLM

    monkeypatch.setenv("FAKE_VLLM_DIE_AT", "init")
    monkeypatch.setenv("FAKE_VLLM_DIE_GPU", "1")
    with pytest.raises(EngineError) as e:
        within(120, ReplicatedVLLM, tiny_model_dir, cfg(data_parallel_size=2))
    assert "replica 1 failed to start" in str(e.value) and "exit code 7" in str(e.value), str(e.value)
    assert mp.active_children() == []
    assert wait_gone(all_pids(two_gpus)) == []


def test_replicas_left_open_do_not_hold_up_interpreter_exit(fake_vllm, tiny_model_dir, tmp_path):
    """A program that never closes the engine still exits, and takes its replicas with it."""
    pids = tmp_path / "pids"
    pids.mkdir()
    script = tmp_path / "leave_open.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(Path(fake_vllm.__file__).parents[1])!r}, {str(SRC)!r}]

        if __name__ == "__main__":
            import torch
            torch.cuda.device_count = lambda: 2
            from humpback.engines.config import EngineConfig
            from humpback.engines.vllm_engine import ReplicatedVLLM

            cfg = EngineConfig(backend="vllm")
            cfg.vllm.data_parallel_size = 2
            engine = ReplicatedVLLM({str(tiny_model_dir)!r}, cfg)
            print("replicas", *[p.pid for p, _ in engine.workers], flush=True)
    """))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_VLLM", "CUDA_VISIBLE"))}
    env["FAKE_VLLM_PIDS"] = str(pids)
    try:
        proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        leftover = all_pids(pids)
        for pid in leftover:
            os.kill(pid, 9)
        pytest.fail(f"the program did not exit with its replicas open ({len(leftover)} processes left)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    replicas = [int(p) for p in proc.stdout.split("replicas", 1)[1].split()]
    assert wait_gone(replicas + all_pids(pids)) == []


# -- one engine in this process -----------------------------------------------------------------------


def test_each_sampled_request_gets_its_own_reproducible_seed(fake_vllm, llm, tiny_model_dir):
    from humpback.engines.vllm_engine import LocalVLLM, request_seed

    with LocalVLLM(tiny_model_dir, cfg()) as e:
        e.generate(REQUESTS, SAMPLED)
        e.generate(REQUESTS, SAMPLED)
        e.generate(REQUESTS, Sampling(temperature=0.7, max_new_tokens=8, seed=12))
        e.generate(REQUESTS, Sampling(temperature=0.0, max_new_tokens=8, seed=11))
    (prompts, first, kw), (_, rerun, _), (_, other, _), (_, greedy, _) = llm.calls
    assert isinstance(first, list) and len(first) == len(prompts) == len(REQUESTS)
    seeds = [p.seed for p in first]
    assert seeds == [request_seed(11, i) for i in range(len(REQUESTS))]
    assert len(set(seeds)) == len(seeds)  # not one noise for all
    assert [p.seed for p in rerun] == seeds  # a rerun (a resumed chunk) samples the same
    assert not {p.seed for p in other} & set(seeds)  # the next chunk's seed gives other noise
    assert all((p.temperature, p.top_p, p.max_tokens) == (0.7, 0.9, 8) for p in first)
    assert all(0 <= s < 2**63 for s in seeds)
    assert not isinstance(greedy, list) and greedy.temperature == 0.0  # greedy: no noise to seed
    # token-id prompts, the keyword arguments the real LLM.generate takes
    assert all(set(p) == {"prompt_token_ids"} and all(isinstance(t, int) for t in p["prompt_token_ids"])
               for p in prompts)
    assert kw == {"use_tqdm": True, "lora_request": None}


def test_the_ledger_counts_the_prompt_tokens_vllm_got_and_the_tokens_it_generated(fake_vllm, llm, tiny_model_dir):
    """In: every prompt token handed to vLLM; out: the reply's token ids (none for a scoring call,
    whose one sampled token only carries the log-probabilities); one example per request."""
    from humpback.engines.vllm_engine import LocalVLLM

    with LocalVLLM(tiny_model_dir, cfg()) as e:
        before = ledger.snapshot()
        e.generate(REQUESTS, SAMPLED)
        generated = ledger.snapshot().minus(before)
        before = ledger.snapshot()
        e.choice_logprobs(REQUESTS, ["1", "2"], assistant_prefix="Score: ")
        scored = ledger.snapshot().minus(before)
    (gen_prompts, _, _), (score_prompts, _, _) = llm.calls
    ids = [p["prompt_token_ids"] for p in gen_prompts]
    replies = [min(8, 1 + sum(x) % 5) for x in ids]
    assert len(set(replies)) > 1  # replies of different lengths: a real sum
    assert generated == ledger.Counts(sum(map(len, ids)), sum(replies), len(REQUESTS))
    assert scored == ledger.Counts(sum(len(p["prompt_token_ids"]) for p in score_prompts), 0, len(REQUESTS))


def test_choice_logprobs_are_exact_for_tokens_outside_the_top(fake_vllm, llm, tiny_model_dir, monkeypatch):
    """The choice tokens rank below the stand-in model's top 30, so top-k log-probabilities would read
    them as -inf; vLLM's logprob_token_ids gives their exact values. A vLLM without that field gets
    the top-k request."""
    from humpback.engines.vllm_engine import TOP_LOGPROBS, LocalVLLM

    digits = ["1", "2", "3", "4", "5"]
    rate = [chat("Rate this answer from 1 to 5."), chat("And this one?")]
    with LocalVLLM(tiny_model_dir, cfg()) as e:
        _, token_ids = choice_plan(e.tok, "Score: ", digits)
        scores = e.choice_logprobs(rate, digits, assistant_prefix="Score: ")
        (_, params, _), = llm.calls
        wanted = sorted({t for ids in token_ids.values() for t in ids})
        assert params.logprob_token_ids == wanted and params.logprobs is None
        assert (params.temperature, params.max_tokens) == (0.0, 1)
        for row in scores:
            for d in digits:
                assert token_ids[d], d
                assert row[d] == pytest.approx(logsumexp([fake_vllm.exact_logprob(t) for t in token_ids[d]]))

        # an older vLLM: the top tokens only
        monkeypatch.setattr(fake_vllm.SamplingParams, "__struct_fields__",
                            ("n", "temperature", "top_p", "seed", "max_tokens", "logprobs"))
        monkeypatch.setattr(fake_vllm.LLM, "top_ids", [token_ids["4"][0], *fake_vllm.FILLER])
        (old,) = e.choice_logprobs(rate[:1], digits, assistant_prefix="Score: ")
        assert llm.calls[-1][1].logprobs == TOP_LOGPROBS
        assert math.isfinite(old["4"]) and old["1"] == -math.inf


def test_choices_no_token_spells_skip_the_model(fake_vllm, llm, tiny_model_dir):
    from humpback.engines.vllm_engine import LocalVLLM

    with LocalVLLM(tiny_model_dir, cfg()) as e:
        out = e.choice_logprobs([chat("x")], ["nonexistentchoiceword", "anotherunknownlongword"])
    assert out == [{"nonexistentchoiceword": -math.inf, "anotherunknownlongword": -math.inf}]
    assert llm.calls == []


# -- LoRA rank ----------------------------------------------------------------------------------------


def _adapter(root: Path, base: Path, **config) -> Path:
    from humpback.io import write_json
    from humpback.models import META

    root.mkdir()
    (root / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", **config}))
    write_json({"kind": "adapter", "base": str(base)}, root / META)
    return root


@pytest.mark.parametrize("config, rank", [({"r": 128}, 128), ({"r": 8, "rank_pattern": {"q_proj": 96}}, 96)])
def test_an_adapter_above_max_lora_rank_is_refused_before_vllm_starts(
        fake_vllm, llm, tiny_model_dir, tmp_path, config, rank):
    from humpback.engines.vllm_engine import VLLMEngine

    adapter = _adapter(tmp_path / "lora", tiny_model_dir, **config)
    with pytest.raises(ConfigError) as e:
        VLLMEngine(adapter, cfg(max_lora_rank=64))
    assert f"max_lora_rank: 64 is below the rank {rank}" in str(e.value) and "set it to 128" in str(e.value)
    assert llm.instances == 0


def test_replicas_refuse_a_too_large_adapter_before_starting_any(two_gpus, llm, tiny_model_dir, tmp_path):
    from humpback.engines.vllm_engine import ReplicatedVLLM

    adapter = _adapter(tmp_path / "lora", tiny_model_dir, r=16)
    with pytest.raises(ConfigError, match="max_lora_rank: 8 is below the rank 16"):
        ReplicatedVLLM(adapter, cfg(data_parallel_size=2, max_lora_rank=8))
    assert mp.active_children() == []


def test_an_adapter_within_max_lora_rank_is_served(fake_vllm, llm, tiny_lora_dir):
    from humpback.engines.vllm_engine import LocalVLLM

    with LocalVLLM(tiny_lora_dir, cfg(max_lora_rank=8)) as e:  # the fixture's adapter has r = 4
        e.generate(REQUESTS[:1], SAMPLED)
    (_, _, kw), = llm.calls
    assert kw["lora_request"].lora_path == str(tiny_lora_dir) and kw["lora_request"].lora_int_id == 1
