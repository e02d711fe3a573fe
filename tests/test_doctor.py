"""`humpback doctor` on the tiny random Llama: each check passes on a good setup and fails on a planted fault."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from stub_server import StubServer

from humpback import doctor
from humpback.cli import main

ROOT = Path(__file__).resolve().parents[1]


def write_params(tmp_path: Path, text: str) -> Path:
    """A new params file each call, so a test can extend an earlier one."""
    p = tmp_path / f"params{len(list(tmp_path.glob('params*.yaml')))}.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def findings(params: Path) -> dict[str, doctor.Finding]:
    return {f.name: f for f in doctor.run_checks(params)}


def model_copy(tiny_model_dir: Path, tmp_path: Path, change=None, name: str = "model") -> Path:
    """The tiny model as a user's own directory (no humpback metadata), its tokenizer changed by `change`."""
    from transformers import AutoTokenizer

    d = tmp_path / name
    shutil.copytree(tiny_model_dir, d)
    (d / "humpback_model.json").unlink()
    if change is not None:
        tok = AutoTokenizer.from_pretrained(d)
        change(tok, d)
        tok.save_pretrained(d)
    return d


@pytest.fixture
def good(tiny_model_dir, tmp_path) -> Path:
    return write_params(tmp_path, f"base_model: {{source: {model_copy(tiny_model_dir, tmp_path)}}}\n")


def test_a_good_setup_passes_every_check_that_applies(good):
    got = findings(good)
    assert {n for n, f in got.items() if f.status not in (doctor.OK, doctor.SKIP)} == set(), got
    for name in ("base model", "tokenizer", "prompt format", "end of reply", "pad token", "score digits",
                 "judge labels", "engine backend", "training", "launch"):
        assert got[name].status == doctor.OK, got[name]
    assert "chat template" in got["prompt format"].message
    assert "ids 33-37" in got["score digits"].message  # the digits' own tokens, read after "Score: "
    assert got["engine endpoint"].status == doctor.SKIP and got["judge logprobs"].status == doctor.SKIP


def test_exit_codes_0_1_2(good, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["doctor", str(good)])
    assert e.value.code == 0
    assert "ready: " in capsys.readouterr().out
    bad = write_params(tmp_path, good.read_text() + "engine: {backend: vllm}\n")
    with pytest.raises(SystemExit) as e:
        main(["doctor", str(bad)])
    assert e.value.code == 1
    assert "not ready" in capsys.readouterr().out
    invalid = write_params(tmp_path, "train: {mode: fast}\n")
    with pytest.raises(SystemExit) as e:
        main(["doctor", str(invalid)])
    assert e.value.code == 2
    assert "train.mode" in capsys.readouterr().err


def test_warnings_do_not_fail(good, tmp_path, monkeypatch):
    import humpback.hardware

    monkeypatch.setattr(humpback.hardware, "cpu_has_bf16", lambda: False)
    p = write_params(tmp_path, good.read_text() + "train: {bf16: true}\nengine: {backend: transformers, device: cpu}\n")
    got = findings(p)
    assert got["training"].status == doctor.WARN and "emulated" in got["training"].message
    assert doctor.exit_code(list(got.values())) == 0


# ---------------------------------------------------------------------------------------------
# tokenizers


def test_digits_merged_with_the_score_prefix_fail(tiny_model_dir, tmp_path):
    d = model_copy(tiny_model_dir, tmp_path, lambda tok, _: tok.add_tokens([f": {i}" for i in range(1, 6)]))
    got = findings(write_params(tmp_path, f"base_model: {{source: {d}}}\n"))
    assert got["score digits"].status == doctor.FAIL and "merges" in got["score digits"].message
    assert got["judge labels"].status == doctor.WARN  # judge.mode auto falls back to text
    p = write_params(tmp_path, f"base_model: {{source: {d}}}\njudge: {{mode: logprob}}\nscore: {{mode: generate}}\n")
    got = findings(p)
    assert got["judge labels"].status == doctor.FAIL
    assert got["score digits"].status == doctor.SKIP  # generate mode parses the rating from text


def test_no_chat_template_is_plain_format_unless_chat_is_asked_for(tiny_model_dir, tmp_path):
    def pretrained(tok, _):
        tok.chat_template = None

    d = model_copy(tiny_model_dir, tmp_path, pretrained)
    (d / "chat_template.jinja").unlink(missing_ok=True)
    got = findings(write_params(tmp_path, f"base_model: {{source: {d}}}\n"))
    assert got["prompt format"].status == doctor.OK and "plain" in got["prompt format"].message
    assert got["end of reply"].status == doctor.OK
    got = findings(write_params(tmp_path, f"base_model: {{source: {d}, prompt_format: chat}}\n"))
    assert got["prompt format"].status == doctor.FAIL and "no chat template" in got["prompt format"].message
    assert got["score digits"].status == doctor.SKIP and "failed" in got["score digits"].message


def test_a_template_that_rejects_the_system_prompt_fails(tiny_model_dir, tmp_path):
    def strict(tok, _):
        tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}"
                             "{{ raise_exception('System role not supported') }}{% endif %}"
                             "{{ m['content'] }}{% endfor %}")

    d = model_copy(tiny_model_dir, tmp_path, strict)
    got = findings(write_params(tmp_path, f"base_model: {{source: {d}}}\n"))
    assert got["prompt format"].status == doctor.FAIL and "System role" in got["prompt format"].message


def test_missing_eos_fails_and_missing_pad_is_padded_with_eos(tiny_model_dir, tmp_path):
    def no_eos(tok, _):
        tok.eos_token = None

    def no_pad(tok, _):
        tok.pad_token = None

    got = findings(write_params(tmp_path, f"base_model: {{source: {model_copy(tiny_model_dir, tmp_path, no_eos)}}}\n"))
    assert got["end of reply"].status == doctor.FAIL and "end-of-sequence" in got["end of reply"].message
    assert got["pad token"].status == doctor.SKIP
    d = model_copy(tiny_model_dir, tmp_path, no_pad, "nopad")
    got = findings(write_params(tmp_path, f"base_model: {{source: {d}}}\n"))
    # training.data pads with eos and masks the padding: no pad token is no problem
    assert got["pad token"].status == doctor.OK and got["pad token"].message.startswith("none: padded with eos")


def test_a_pad_token_outside_the_embedding_fails(tiny_model_dir, tmp_path):
    d = model_copy(tiny_model_dir, tmp_path, lambda tok, _: tok.add_special_tokens({"pad_token": "<pad>"}))
    got = findings(write_params(tmp_path, f"base_model: {{source: {d}}}\n"))
    assert got["pad token"].status == doctor.FAIL and "outside the model's 49152-token" in got["pad token"].message


def test_replies_that_end_on_a_token_generation_does_not_stop_on_fail(tiny_model_dir, tmp_path):
    def other_eos(tok, d):  # ChatML replies end with <|im_end|>, but eos says <|endoftext|>
        tok.eos_token = "<|endoftext|>"
        gen = json.loads((d / "generation_config.json").read_text())
        (d / "generation_config.json").write_text(json.dumps({**gen, "eos_token_id": tok.eos_token_id}))

    got = findings(write_params(tmp_path, f"base_model: {{source: {model_copy(tiny_model_dir, tmp_path, other_eos)}}}\n"))
    assert got["end of reply"].status == doctor.FAIL
    assert "<|im_end|>" in got["end of reply"].message and "<|endoftext|>" in got["end of reply"].message


def test_models_base_is_reused_when_it_was_made_from_these_params(tiny_model_dir, tmp_path):
    shutil.copytree(tiny_model_dir, tmp_path / "models" / "base")
    got = findings(write_params(tmp_path, "base_model: {source: tiny}\n"))
    assert "models/base reused" in got["base model"].message
    assert "from models/base" in got["tokenizer"].message and got["score digits"].status == doctor.OK
    # made with the chat template: plain params would re-run the base_model stage, so it is not reused
    got = findings(write_params(tmp_path, "base_model: {source: tiny, prompt_format: plain}\n"))
    assert "reused" not in got["base model"].message and "plain" in got["prompt format"].message


# ---------------------------------------------------------------------------------------------
# base model sources


def test_a_hub_id_that_cannot_be_fetched_fails(good, tmp_path, monkeypatch):
    from huggingface_hub import constants

    p = write_params(tmp_path, "base_model: {source: humpback-tests/no-such-model}\n")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    got = findings(p)
    assert got["base model"].status == doctor.FAIL and "HF_HUB_OFFLINE" in got["base model"].message
    assert got["tokenizer"].status == doctor.SKIP
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    got = findings(p)
    assert got["base model"].status == doctor.FAIL and "cannot be reached" in got["base model"].message


def test_a_directory_that_is_not_a_model_fails(tmp_path):
    (tmp_path / "empty").mkdir()
    got = findings(write_params(tmp_path, f"base_model: {{source: {tmp_path / 'empty'}}}\n"))
    assert got["base model"].status == doctor.FAIL and "no config.json" in got["base model"].message


# ---------------------------------------------------------------------------------------------
# backends and training


def test_vllm_backend_without_vllm_or_cuda_fails(good, tmp_path):
    got = findings(write_params(tmp_path, good.read_text() + "engine: {backend: vllm}\n"))
    assert got["engine backend"].status == doctor.FAIL
    assert "vllm package" in got["engine backend"].message and "CUDA" in got["engine backend"].message


def test_a_cuda_device_without_a_gpu_fails_and_ray_on_cpu_passes(good, tmp_path):
    got = findings(write_params(tmp_path, good.read_text() + "engine: {backend: transformers, device: cuda}\n"))
    assert got["engine backend"].status == doctor.FAIL and "torch sees 0 CUDA" in got["engine backend"].message
    got = findings(write_params(tmp_path, good.read_text() + "engine: {backend: ray, device: cpu}\n"))
    assert got["engine backend"].status == doctor.OK and "transformers replica" in got["engine backend"].message


def test_an_fsdp_launch_that_cannot_save_fails(good, tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_STATE_DICT_TYPE", "SHARDED_STATE_DICT")
    got = findings(good)
    assert got["launch"].status == doctor.FAIL and "FULL_STATE_DICT" in got["launch"].message


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible endpoints (a scripted server on 127.0.0.1)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat_reply(logprobs: bool):
    def respond(body, n):
        choice = {"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}
        if logprobs:
            top = [{"token": t, "logprob": lp} for t, lp in (("4", -0.3), ("5", -1.5), ("3", -2.0))]
            choice["logprobs"] = {"content": [{"token": "4", "logprob": -0.3, "top_logprobs": top}]}
        return 200, {"id": "x", "object": "chat.completion", "choices": [choice]}, {}
    return respond


@pytest.fixture
def serve():
    servers = []

    def start(respond, models):
        servers.append(StubServer(respond, models=models))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def test_a_good_engine_endpoint_is_listed_and_gives_logprobs(good, tmp_path, serve):
    server = serve(chat_reply(logprobs=True), ["m0", "other"])
    p = write_params(tmp_path, good.read_text() + f"engine: {{backend: openai, openai: {{base_url: '{server.url}', "
                                                  "model: m0, max_retries: 0}}\n")
    got = findings(p)
    assert got["engine endpoint"].status == doctor.OK and "serves m0" in got["engine endpoint"].message
    assert got["engine logprobs"].status == doctor.OK and "3, 4, 5" in got["engine logprobs"].message
    assert server.gets[0][0] == "/v1/models"
    assert server.bodies[0]["logprobs"] is True and server.bodies[0]["max_tokens"] == 1
    assert got["score digits"].status == doctor.SKIP  # the endpoint's tokenizer decides


def test_an_unreachable_endpoint_fails_and_skips_its_logprobs(good, tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    got = findings(write_params(tmp_path, good.read_text() + f"judge: {{base_url: '{url}', served_model: j}}\n"))
    assert got["judge endpoint"].status == doctor.FAIL and "cannot be reached" in got["judge endpoint"].message
    assert got["judge logprobs"].status == doctor.SKIP and "judge endpoint failed" in got["judge logprobs"].message
    assert got["judge labels"].status == doctor.SKIP  # judged at the endpoint, not by the local model


def test_an_endpoint_without_logprobs(good, tmp_path, serve):
    server = serve(chat_reply(logprobs=False), ["gpt-judge", "m0"])
    judge = f"judge: {{base_url: '{server.url}', served_model: gpt-judge, mode: logprob}}\n"
    got = findings(write_params(tmp_path, good.read_text() + judge))
    assert got["judge endpoint"].status == doctor.OK
    assert got["judge logprobs"].status == doctor.FAIL and "no logprobs" in got["judge logprobs"].message
    # scoring falls back to generate mode: a warning, not a failure
    engine = f"engine: {{backend: openai, openai: {{base_url: '{server.url}', model: m0}}}}\n"
    got = findings(write_params(tmp_path, good.read_text() + engine))
    assert got["engine logprobs"].status == doctor.WARN and "falls back to generate" in got["engine logprobs"].message


def test_an_endpoint_that_does_not_serve_the_model_fails(good, tmp_path, serve):
    server = serve(chat_reply(logprobs=True), ["someone-else"])
    # no engine.openai.model: the endpoint must serve every model directory's name
    got = findings(write_params(tmp_path, good.read_text() + f"engine: {{backend: openai, openai: {{base_url: '{server.url}'}}}}\n"))
    assert got["engine endpoint"].status == doctor.FAIL
    assert "does not serve backward, m0, it1, base, it2" in got["engine endpoint"].message
    assert got["engine logprobs"].status == doctor.SKIP


def test_an_endpoint_without_a_model_list_warns(good, tmp_path, serve):
    server = serve(chat_reply(logprobs=True), None)  # /models answers 404, as some servers do
    p = write_params(tmp_path, good.read_text() + f"engine: {{backend: openai, openai: {{base_url: '{server.url}', "
                                                  "model: m0}}\n")
    got = findings(p)
    assert got["engine endpoint"].status == doctor.WARN and "HTTP 404" in got["engine endpoint"].message
    assert got["engine logprobs"].status == doctor.OK


# ---------------------------------------------------------------------------------------------
# the screen


def test_the_output_fits_one_screen(tiny_model_dir, tmp_path, serve):
    from rich.console import Console

    server = serve(chat_reply(logprobs=False), ["x"])
    d = model_copy(tiny_model_dir, tmp_path, lambda tok, _: tok.add_tokens([f": {i}" for i in range(1, 6)]))
    # many failures with long messages at once
    p = write_params(tmp_path, f"base_model: {{source: {d}}}\nengine: {{backend: vllm}}\n"
                               f"judge: {{base_url: '{server.url}/{'x' * 60}', served_model: j, mode: logprob}}\n")
    (tmp_path / "good").mkdir()
    ok = write_params(tmp_path / "good", f"base_model: {{source: {model_copy(tiny_model_dir, tmp_path, name='ok')}}}\n")
    for params in (p, ok):
        buf = io.StringIO()
        doctor.show(doctor.run_checks(params), Console(file=buf, width=100), seconds=1.0)
        lines = buf.getvalue().splitlines()
        assert len(lines) <= 40 and max(map(len, lines)) <= 100, buf.getvalue()
        assert len(lines) >= len(doctor.CHECKS) + 2


@pytest.mark.slow
def test_doctor_on_the_default_params_with_the_embedded_model():
    out = subprocess.run([sys.executable, "-m", "humpback.cli", "doctor", "params.yaml"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "COLUMNS": "100"})
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) <= 40 and "ready: " in lines[-1] and " 0 FAIL" in lines[-1]
    for name in ("base model", "tokenizer", "score digits", "judge labels", "end of reply"):
        assert any(line.startswith("ok") and name in line for line in lines), out.stdout
