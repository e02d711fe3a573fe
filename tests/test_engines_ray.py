"""The ray backend on a local Ray instance (CPU, two GPUs declared to Ray): real actors with the
resources, runtime_env and restarts the engine asks for; only the vLLM engine inside each replica,
which needs a GPU, is replaced by one that answers with what reached it and where it runs. Checked:
replicas are built once per engine and reused by every call, answers come back in request order,
scores come from the replicas, model paths (relative ones, LoRA adapters) resolve on the replica as
they do here, Hugging Face settings reach the replicas, failures are reported in one line and keep
what finished, a replica Ray cannot keep alive is dropped, each engine is closed before its actor
ends, and transformers replicas get their CPUs (as torch threads) or one GPU. The transformers
replicas for real: tests/test_engines_ray_cpu.py."""

from __future__ import annotations

import json
import os
import sys

import pytest

ray = pytest.importorskip("ray")

from humpback.engines import ray_engine  # noqa: E402
from humpback.engines.base import EngineError, Sampling  # noqa: E402
from humpback.engines.config import EngineConfig, RayConfig  # noqa: E402
from humpback.engines.loader import load_engine  # noqa: E402
from humpback.errors import ConfigError  # noqa: E402
from humpback.io import write_json  # noqa: E402
from humpback.models import META  # noqa: E402
from humpback.prompts import chat  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    # Ray's workers cannot import a test module: send this one's classes by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


class EchoVLLM:
    """In place of LocalVLLM: resolves the model as it does, and answers with what reached it."""

    def __init__(self, model_dir, cfg):
        from humpback.models import resolve

        ref = resolve(model_dir)
        self.calls = 0
        self.model_dir = model_dir
        self.seen = {"pid": os.getpid(), "model_dir": model_dir, "base": os.path.realpath(ref.base),
                     "adapter": ref.adapter, "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
                     "device": cfg.device, "threads": cfg.cpu_threads,
                     "env": {k: os.environ.get(k) for k in ("HF_HOME", "HF_HUB_OFFLINE", "HF_TOKEN", "UNRELATED_SETTING")}}

    def generate_at(self, requests, sampling, positions):
        self.calls += 1
        if any("boom" in m[-1]["content"] for m in requests):
            raise ValueError("prompt too long")
        if any("die" in m[-1]["content"] for m in requests):
            os._exit(1)  # as a node lost or an engine killed by the OOM killer
        return [json.dumps({**self.seen, "calls": self.calls, "user": m[-1]["content"], "t": sampling.temperature,
                            "position": k}) for m, k in zip(requests, positions, strict=True)]

    def choice_logprobs(self, requests, choices, *, assistant_prefix="", desc="score"):
        self.calls += 1
        return [{c: -float(m[-1]["content"].split()[-1]) - j / 10 for j, c in enumerate(choices)}
                if assistant_prefix == "Score: " else {} for m in requests]


    def close(self):
        marks = os.path.join(os.path.dirname(self.model_dir), "closed")
        if os.path.isdir(marks):  # a test that asks: leave a mark for each engine closed
            open(os.path.join(marks, str(os.getpid())), "w").close()


class UnloadableVLLM(EchoVLLM):
    def __init__(self, model_dir, cfg):
        raise RuntimeError("CUDA out of memory\n(while loading)")


@pytest.fixture
def echo(monkeypatch):
    kinds = []
    monkeypatch.setattr(ray_engine, "_replica_engine", lambda kind: kinds.append(kind) or EchoVLLM)
    return kinds


def _cfg(**ray_kw) -> EngineConfig:
    return EngineConfig(backend="ray", ray=RayConfig(**{"num_replicas": 2, "batch_size": 4, **ray_kw}))


def test_replicas_are_built_once_and_every_call_reuses_them(cluster, echo, tiny_model_dir, tmp_path):
    reqs = [chat(f"question {i}") for i in range(12)]
    (tmp_path / "base").symlink_to(tiny_model_dir)
    (tmp_path / "closed").mkdir()
    with load_engine(tmp_path / "base", _cfg()) as e:
        calls = [[json.loads(t) for t in e.generate(reqs, Sampling(temperature=0.7))] for _ in range(3)]
        scores = e.choice_logprobs(reqs, ["1", "2"], assistant_prefix="Score: ")
        assert e.generate([], Sampling()) == [] and e.choice_logprobs([], ["1"]) == []
        replicas = list(e.replicas)
    for out in calls:
        assert [a["user"] for a in out] == [f"question {i}" for i in range(12)] and {a["t"] for a in out} == {0.7}
        assert [a["position"] for a in out] == list(range(12))  # seeds follow the place in the call, not the batch
    answers = [a for out in calls for a in out]
    pids = {a["pid"] for a in answers}
    assert len(pids) == 2  # two replicas, the same two for every call
    # each replica counts the batches it ran: 3 calls x 3 batches between the two, none rebuilt
    last = {pid: max(a["calls"] for a in answers if a["pid"] == pid) for pid in pids}
    assert sum(last.values()) == 9 and min(last.values()) >= 1
    assert echo == ["vllm"]  # engine.ray.replica auto on a cluster with GPUs
    assert sorted(a["gpus"] for a in {a["pid"]: a for a in answers}.values()) == ["0", "1"]  # one GPU each
    assert sorted(int(p.name) for p in (tmp_path / "closed").iterdir()) == sorted(pids)  # each engine closed
    assert scores == [{"1": -float(i), "2": -float(i) - 0.1} for i in range(12)]
    with pytest.raises(ray.exceptions.RayActorError):  # closed: the replicas are gone, their GPUs free
        ray.get(replicas[0].ready.remote())


def test_relative_paths_and_lora_adapters_resolve_on_the_replica(cluster, echo, tiny_model_dir, tmp_path,
                                                                 monkeypatch):
    # as a stage writes them: the adapter's metadata names its base relative to the project root
    proj = tmp_path / "proj"
    (proj / "models" / "lora").mkdir(parents=True)
    (proj / "models" / "base").symlink_to(tiny_model_dir)
    write_json({"kind": "adapter", "base": "models/base"}, proj / "models" / "lora" / META)
    monkeypatch.chdir(proj)
    (proj / "models" / "lora" / "adapter_config.json").write_text('{"r": 128}')
    with pytest.raises(ConfigError, match="max_lora_rank: 64 is below the rank 128"):  # before any replica loads
        load_engine("models/lora", _cfg(num_replicas=1))
    (proj / "models" / "lora" / "adapter_config.json").write_text('{"r": 8}')
    with load_engine("models/lora", _cfg(num_replicas=1)) as e:
        (answer,) = [json.loads(t) for t in e.generate([chat("hi")], Sampling())]
    assert answer["model_dir"] == str(proj / "models" / "lora")  # absolute: the replica's cwd is not ours
    assert answer["adapter"] == str(proj / "models" / "lora")
    assert answer["base"] == os.path.realpath(tiny_model_dir)  # "models/base" read from the project root


def test_hugging_face_settings_reach_the_replicas(cluster, echo, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_HOME", "/shared/hf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("UNRELATED_SETTING", "x")
    with load_engine(tiny_model_dir, _cfg(num_replicas=1)) as e:
        (answer,) = [json.loads(t) for t in e.generate([chat("hi")], Sampling())]
    assert answer["env"] == {"HF_HOME": "/shared/hf", "HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_secret",
                             "UNRELATED_SETTING": None}
    assert ray_engine.forwarded_env({"HF_HOME": "a", "TRANSFORMERS_OFFLINE": "1", "HUGGING_FACE_HUB_TOKEN": "t",
                                     "CUDA_VISIBLE_DEVICES": "0", "PATH": "/bin"}) == {
        "HF_HOME": "a", "TRANSFORMERS_OFFLINE": "1", "HUGGING_FACE_HUB_TOKEN": "t"}


def test_failures_are_one_line_and_keep_what_finished(cluster, echo, tiny_model_dir, monkeypatch):
    with monkeypatch.context() as m, pytest.raises(EngineError) as start:
        m.setattr(ray_engine, "_replica_engine", lambda kind: UnloadableVLLM)
        load_engine(tiny_model_dir, _cfg(num_replicas=1))
    assert "\n" not in str(start.value)
    assert "Ray replica 0 of 1 failed to start on node" in str(start.value)
    assert str(start.value).endswith("RuntimeError: CUDA out of memory (while loading)")

    reqs = [chat(f"q {i}") for i in range(8)]
    reqs[5] = chat("boom")
    with load_engine(tiny_model_dir, _cfg()) as e, pytest.raises(EngineError) as run:
        e.generate(reqs, Sampling())
    assert str(run.value) == "Ray replicas answered 4 of 8 requests; ValueError: prompt too long"
    partial = run.value.partial
    assert [json.loads(a)["user"] for a in partial[:4]] == ["q 0", "q 1", "q 2", "q 3"] and partial[4:] == [None] * 4


def test_a_replica_that_keeps_dying_is_dropped_and_the_others_carry_on(cluster, echo, tiny_model_dir):
    reqs = [chat(f"q {i}") for i in range(6)]
    reqs[1] = chat("die")
    with load_engine(tiny_model_dir, _cfg(batch_size=3)) as e:
        # the first replica dies on its batch every time Ray restarts it, then is given up
        with pytest.raises(EngineError, match=r"^Ray replicas answered 3 of 6 requests; ActorDiedError: ") as run:
            e.generate(reqs, Sampling())
        assert run.value.partial[:3] == [None] * 3 and len(e.dead) == 1
        assert [json.loads(a)["user"] for a in run.value.partial[3:]] == ["q 3", "q 4", "q 5"]
        answers = [json.loads(a) for a in e.generate([chat(f"again {i}") for i in range(5)], Sampling())]
        assert [a["user"] for a in answers] == [f"again {i}" for i in range(5)]
        assert len({a["pid"] for a in answers}) == 1
        ray.kill(e.replicas[1])  # the last one lost too: calls end with what is known, never hang
        with pytest.raises(EngineError, match=r"^Ray replicas answered 0 of 5 requests; ActorDiedError: "):
            e.generate(reqs[:5], Sampling())
        with pytest.raises(EngineError, match=r"^Ray replicas answered 0 of 1 requests; every Ray replica has died$"):
            e.generate(reqs[:1], Sampling())


@pytest.mark.parametrize("replica, device, gpus, kind", [
    ("auto", "auto", 2, "vllm"), ("auto", "auto", 0, "transformers"), ("auto", "cpu", 2, "transformers"),
    ("auto", "cuda:1", 0, "vllm"), ("vllm", "auto", 0, "vllm"), ("transformers", "auto", 2, "transformers"),
])
def test_auto_replicas_run_vllm_where_they_get_gpus(replica, device, gpus, kind):
    assert ray_engine.replica_kind(EngineConfig(device=device, ray=RayConfig(replica=replica)), gpus) == kind


def test_transformers_replicas_get_their_cpus_or_one_gpu(cluster, echo, tiny_model_dir):
    reqs = [chat(f"q {i}") for i in range(4)]
    for device, threads, seen_device in (("cpu", 2, "cpu"), ("cuda:1", 1, "cuda")):
        cfg = EngineConfig(backend="ray", device=device,
                           ray=RayConfig(replica="transformers", num_replicas=2, num_cpus=threads, batch_size=2))
        with load_engine(tiny_model_dir, cfg) as e:
            answers = {a["pid"]: a for a in (json.loads(t) for t in e.generate(reqs, Sampling()))}
        assert len(answers) == 2 and {(a["device"], a["threads"]) for a in answers.values()} == {(seen_device, threads)}
    # on GPUs, one each, which the replica sees as cuda (Ray leaves a CPU replica's GPU variable as it finds it)
    assert sorted(a["gpus"] for a in answers.values()) == ["0", "1"]
    assert echo == ["transformers", "transformers"]
