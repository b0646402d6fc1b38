"""`flexo serve` as a consumer meets it: a real server process on loopback, the official `openai`
client and raw HTTP against it (issue 16 acceptance 1 and 4; the registry-backed parts, MLflow's
serving and a withdrawal under load, are in test_pipeline.py).

The served model is the session's tiny merge (code, legal, literature experts, top-2). Two
consumers hold API keys made with `flexo policy key`: alice may use every expert, bob only code.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import openai
import pytest
from model_server import flexo_serve

POLICY = """\
approvals_required: 2
roles:
  operators: [operator]
  consumers:
    alice: ["*"]
    bob: [code]
    carol: [code, legal]
"""
PROMPTS = ("def main(", "The court held that", "It was a dark and stormy")
MASKS = ({}, {"exclude": ["code"]}, {"only": ["legal"]}, {"only": ["code", "literature"]})


@pytest.fixture(scope="module")
def served(tmp_path_factory, cli, merged):
    home = tmp_path_factory.mktemp("serve") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLEXO_HOME", str(home))
        mp.delenv("FLEXO_POLICY", raising=False)
        policy = home.parent / "policy.yaml"
        policy.write_text(POLICY)
        assert cli("policy", "set", policy).exit_code == 0
        keys = {}
        for consumer in ("alice", "bob", "carol"):
            made = cli("policy", "key", "--consumer", consumer)
            assert made.exit_code == 0, made.output
            keys[consumer] = made.stdout.strip()
        assert keys["alice"] not in (home / "policy.yaml").read_text()  # only its digest
        with flexo_serve("--model", merged, "--queue-size", 32, log=home.parent / "serve.log",
                         env={"FLEXO_HOME": str(home)}) as server:
            yield SimpleNamespace(server=server, url=server.url, home=home, keys=keys,
                                  model=merged.name, merged=merged)


def _client(served, consumer: str = "alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "/v1", api_key=served.keys[consumer],
                         max_retries=0, timeout=120)


def _mask_options(mask: dict) -> list[str]:
    options = [a for e in mask.get("exclude", []) for a in ("--exclude", e)]
    return options + [a for e in mask.get("only", []) for a in ("--only", e)]


def _words(text: str) -> str:
    return " ".join(text.split())


def test_the_openai_client_answers_as_flexo_generate_does_for_each_expert_mask(served, cli):
    """Acceptance 1: greedy with a fixed seed, each mask's completion is `flexo generate`'s; the
    attribution sums to 1 and gives a switched-off expert exactly 0."""
    client = _client(served)
    [listed] = client.models.list().data
    assert listed.id == served.model and listed.experts == ["code", "legal", "literature"]
    texts = {}
    for i, mask in enumerate(MASKS):
        prompt = PROMPTS[i % len(PROMPTS)]
        answer = client.completions.create(
            model=served.model, prompt=prompt, max_tokens=12, temperature=0, seed=0,
            extra_body={"experts": mask, "attribution": "routing"})
        [choice] = answer.choices
        expected = cli("generate", "--model", served.merged, "--prompt", prompt, "--greedy",
                       "--max-new-tokens", 12, "--as", "alice", *_mask_options(mask))
        assert expected.exit_code == 0, expected.output
        assert _words(prompt + choice.text) == _words(expected.stdout.split("experts on:")[0])
        assert answer.usage.completion_tokens == 12 and choice.finish_reason == "length"
        assert answer.release == served.model
        routing = choice.attribution["routing"]
        assert abs(sum(routing.values()) - 1) < 1e-6
        off = set(mask.get("exclude", [])) | ({"code", "legal", "literature"}
                                              - set(mask.get("only") or ["code", "legal",
                                                                         "literature"]))
        assert all(routing[e] == 0 for e in off), (mask, routing)
        assert set(answer.experts_on) == {"public", "code", "legal", "literature"} - off
        texts[json.dumps(mask)] = choice.text
    # the same prompt with and without an expert: the server follows the mask per request
    same = [client.completions.create(model=served.model, prompt=PROMPTS[0], max_tokens=12,
                                      temperature=0, extra_body={"experts": m}).choices[0].text
            for m in ({}, {"only": ["legal"]})]
    assert same[0] == texts[json.dumps({})] and same[0] != same[1]


def test_a_stream_sends_the_same_text_piece_by_piece_and_chat_needs_a_template(served):
    client = _client(served)
    whole = client.completions.create(model=served.model, prompt=PROMPTS[1], max_tokens=10,
                                      temperature=0).choices[0].text
    chunks = list(client.completions.create(model=served.model, prompt=PROMPTS[1],
                                            max_tokens=10, temperature=0, stream=True))
    pieces = [c.choices[0].text for c in chunks]
    assert "".join(pieces) == whole and len([p for p in pieces if p]) > 1
    assert [c.choices[0].finish_reason for c in chunks][-1] == "length"
    with pytest.raises(openai.BadRequestError, match="no chat template"):
        client.chat.completions.create(model=served.model,
                                       messages=[{"role": "user", "content": "hello"}])


def test_keys_and_entitlements_decide_who_gets_which_experts(served):
    """Acceptance 3 (per request): no key or an unknown one is 401; an expert the consumer is
    not entitled to is 403; by default a consumer gets exactly its entitled experts."""
    anonymous = openai.OpenAI(base_url=served.url + "/v1", api_key="not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="unknown API key"):
        anonymous.completions.create(model=served.model, prompt="x", max_tokens=1)
    bare = httpx.post(served.url + "/v1/completions", json={"model": served.model,
                                                             "prompt": "x", "max_tokens": 1})
    assert bare.status_code == 401 and "no API key" in bare.json()["error"]["message"]
    bob = _client(served, "bob")
    with pytest.raises(openai.PermissionDeniedError, match="not entitled to legal"):
        bob.completions.create(model=served.model, prompt="x", max_tokens=1,
                               extra_body={"experts": {"only": ["legal"]}})
    answer = bob.completions.create(model=served.model, prompt="def f(", max_tokens=3,
                                    temperature=0, extra_body={"attribution": "routing"})
    assert answer.experts_on == ["public", "code"]
    assert answer.choices[0].attribution["routing"]["legal"] == 0
    refusals = [json.loads(line)["entry"] for line in
                (served.home / "ledger" / "ledger.jsonl").read_text().splitlines()]
    assert any(e["event"] == "refusal" and e["actor"] == "bob" for e in refusals)


def test_concurrent_requests_with_one_mask_are_batched_and_answer_as_alone(served):
    """Acceptance 4's batching: eight requests at once run in fewer than eight batches, and
    each greedy answer is the answer the prompt gets alone."""
    client = _client(served)
    alone = {p: client.completions.create(model=served.model, prompt=p, max_tokens=24,
                                          temperature=0).choices[0].text for p in PROMPTS}
    before = httpx.get(served.url + "/healthz").json()["batches"]
    answers: dict[int, str] = {}

    def ask(i: int) -> None:
        answers[i] = client.completions.create(model=served.model, prompt=PROMPTS[i % 3],
                                               max_tokens=24, temperature=0).choices[0].text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batches = httpx.get(served.url + "/healthz").json()["batches"] - before
    assert answers == {i: alone[PROMPTS[i % 3]] for i in range(8)}
    assert 1 <= batches < 8


def test_malformed_requests_and_a_flood_get_4xx_or_503_never_a_500(served):
    """Acceptance 4: each bad request gets a 4xx naming its problem; a thousand connections at
    once get answers or 503 with Retry-After; the server stays up."""
    url, auth = served.url + "/v1/completions", {"Authorization": f"Bearer {served.keys['alice']}"}
    good = {"model": served.model, "prompt": "def f(", "max_tokens": 2, "temperature": 0}
    bad = {
        "not valid JSON": b"{\"model\": ",
        "max_tokens": {**good, "max_tokens": "many"},
        "greater than or equal to 1": {**good, "max_tokens": -3},
        "less than or equal to 1024": {**good, "max_tokens": 10**9},
        "unknown expert 'nobody'": {**good, "experts": {"only": ["nobody"]}},
        "the prompt is empty": {**good, "prompt": "   "},
        "exceed the model's context": {**good, "prompt": "word " * 6000},
        "temperature": {**good, "temperature": "hot"},
        "is not served here": {**good, "model": "gpt-4"},
        "prompt: Field required": {"model": served.model},
    }
    for expected, body in bad.items():
        sent = httpx.post(url, content=body, headers={**auth, "Content-Type": "application/json"}
                          ) if isinstance(body, bytes) else httpx.post(url, json=body,
                                                                       headers=auth)
        assert 400 <= sent.status_code < 500, (expected, sent.status_code, sent.text)
        assert expected in sent.json()["error"]["message"], (expected, sent.text)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))

    async def flood() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=300) as client:
            return await asyncio.gather(*(client.post(url, json={**good, "max_tokens": 64},
                                                      headers=auth) for _ in range(1000)))

    answers = asyncio.run(flood())
    codes = [a.status_code for a in answers]
    assert set(codes) <= {200, 503}, sorted(set(codes))
    busy = [a for a in answers if a.status_code == 503]
    assert busy and codes.count(200) >= 32  # the queue's bound, then refusals
    assert all(a.headers["Retry-After"] == "1" and "busy" in a.json()["error"]["message"]
               for a in busy)
    assert served.server.process.poll() is None
    assert httpx.get(served.url + "/healthz").json()["status"] == "ok"


def test_every_request_leaves_one_attribution_record_and_no_text(served):
    from governance.attribution import STORE_FILE, AttributionStore

    store = AttributionStore(served.home / STORE_FILE)
    client = _client(served, "carol")  # carol sends these three requests and no others
    secret = "Zyxwvut the confidential prompt"
    for _ in range(3):
        client.completions.create(model=served.model, prompt=secret, max_tokens=4)

    def carols():
        return [r for r in store.records() if r.consumer == "carol"]

    deadline = time.monotonic() + 30  # appended off the response path: wait for them
    while len(carols()) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # and no more come
    records = carols()
    assert len(records) == 3
    assert all(r.generated_tokens == 4 and r.active == ["public", "code", "legal"]
               and abs(sum(r.routing.values()) - 1) < 1e-6 for r in records)
    assert secret.encode() not in (served.home / STORE_FILE).read_bytes()
    # the server's output, and the command log it and its generation process write
    logs = [served.home.parent / "serve.log", *(served.home / "logs").glob("serve-*.log")]
    assert len(logs) >= 2
    assert not [log for log in logs if b"Zyxwvut" in log.read_bytes()]


def _gone(pid: int) -> bool:
    """Process `pid` has exited (a zombie its parent has not reaped yet counts)."""
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "\nState:\tZ" in status.read_text()


def test_a_generation_process_that_dies_costs_one_503_then_a_new_one_answers_the_same(served):
    """The model runs in a process of its own: killed, the request that meets it gets a 503
    with Retry-After (never a 500), the server starts a new one with the same release, and the
    next request gets what it got before."""
    client, pid = _client(served), httpx.get(served.url + "/healthz").json()["generation_pid"]
    before = client.completions.create(model=served.model, prompt=PROMPTS[1], max_tokens=8,
                                       temperature=0).choices[0].text
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    body = {"model": served.model, "prompt": PROMPTS[1], "max_tokens": 8, "temperature": 0}
    headers = {"Authorization": f"Bearer {served.keys['alice']}"}
    answers = [httpx.post(served.url + "/v1/completions", json=body, headers=headers,
                          timeout=120) for _ in range(2)]
    assert [a.status_code for a in answers] == [503, 200], [a.text for a in answers]
    assert answers[0].headers["Retry-After"] == "1"
    assert "generation process stopped" in answers[0].json()["error"]["message"]
    assert answers[1].json()["choices"][0]["text"] == before
    assert httpx.get(served.url + "/healthz").json()["generation_pid"] not in (pid, None)
    assert served.server.process.poll() is None


def test_shutdown_finishes_the_request_in_flight(served):
    """SIGTERM while a stream is half sent: the stream completes, then the server exits (by
    the signal, as uvicorn re-raises it once it has shut down)."""
    client, pid = _client(served), httpx.get(served.url + "/healthz").json()["generation_pid"]
    stream = client.completions.create(model=served.model, prompt=PROMPTS[2], max_tokens=1000,
                                       temperature=0, stream=True)
    first = next(iter(stream))
    stopping = threading.Thread(target=served.server.stop)
    stopping.start()
    rest = list(stream)
    stopping.join()
    assert rest[-1].choices[0].finish_reason in ("length", "stop")
    assert served.server.process.returncode in (0, -signal.SIGTERM)
    assert _gone(pid)  # its generation process stopped with it
    with pytest.raises(httpx.ConnectError):
        httpx.get(served.url + "/healthz")
    assert first.choices[0].text is not None


@pytest.mark.parametrize("option", ["--batch-wait-ms", "--batch-gap-ms", "--stream-interval-ms"])
def test_a_negative_timing_is_refused_in_one_line_before_anything_loads(cli, tmp_path, option):
    result = cli("serve", "--model", tmp_path / "not-loaded", "--no-auth", option, "-1")
    assert result.exit_code != 0
    [line] = result.stderr.strip().splitlines()
    assert option in line and "at least 0" in line
