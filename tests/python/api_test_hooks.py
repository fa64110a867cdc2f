"""Schemathesis hooks of `make api-test` (tests/python/api_test.sh loads them through
tests/python/schemathesis.toml).

Generated values that name things outside the API, which a schema cannot know:

- `project_path`: a made-up path is almost never an existing folder, so valid bodies would only
  ever get 400 and the answers behind them (a new session: 201) would go unchecked. A valid
  (positive) case gets the server's project folder instead (`CCS_API_TEST_PROJECT`); invalid ones
  keep theirs, so the 400 and 403 of bad folders are still tested.
- `webhook_url`: a URL that ccs takes is a real address, and the server under test would POST to
  whatever host hypothesis made up when the task ends. Such URLs go to a closed port on this
  machine instead, so the test sends nothing off it; a URL that ccs refuses (not http(s), too
  short) is left as generated, so its 400 is still tested.

- the `/v1/` APIs' `model` and last message: a valid case asks for a model the server offers
  (`sonnet`: the test config sets no `models`) and ends with a user message that has text (what
  ccs answers; a rule across array items no schema states), so valid bodies run a turn; `ccs`
  options get the project folder like `project_path` above.

And the 5xx a correct server gives: a run of the fake CLI costs $0.0125, so a run whose budget is
below that ends "Reached maximum budget" (502), and one whose `timeout_ms` is below what a start
of the fake takes on a busy machine ends 504. `filter_failure` drops the server-error failure of
exactly those answers, after checking the answer says that and the request asked for it; every
other 5xx fails the run. Each one dropped is written to `CCS_API_TEST_EXPECTED` for the summary.
"""

import json
import os
import urllib.parse
import urllib.request

import schemathesis
from schemathesis.generation import GenerationMode

PROJECT = os.environ.get("CCS_API_TEST_PROJECT")
BASE_URL = os.environ.get("CCS_API_TEST_URL", "")
KEY = os.environ.get("CCS_API_TEST_KEY", "")
EXPECTED_LOG = os.environ.get("CCS_API_TEST_EXPECTED")
WEBHOOK_SINK = "http://127.0.0.1:9/ccs-api-test"
# COST_PER_CALL in tests/it/support/fake_claude.rs.
FAKE_COST_PER_CALL = 0.0125
# A `timeout_ms` below this may run out before the fake CLI has even started on a loaded machine
# (it answers in 5 to 50 ms); a 504 above it means a run hung: a failure.
SHORT_TIMEOUT_MS = 1000


def _accepted_by_ccs(url):
    # `Fields::url` in src/api/fields.rs: http(s) and at least 10 characters.
    return isinstance(url, str) and url.startswith(("http://", "https://")) and len(url) >= 10


@schemathesis.hook
def map_case(context, case):
    body = case.body
    if not isinstance(body, dict):
        return case
    if _accepted_by_ccs(body.get("webhook_url")):
        body["webhook_url"] = WEBHOOK_SINK
    positive = case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE
    if PROJECT and positive and isinstance(body.get("project_path"), str):
        body["project_path"] = PROJECT
    if positive and isinstance(body.get("messages"), list) and "model" in body:
        _make_answerable(body)
    return case


def _make_answerable(body):
    """A /v1 body the server can run: an offered model, a last user message with text, and
    `stream_options` only with `stream: true` (as OpenAI)."""
    body["model"] = "sonnet"
    last = {"role": "user", "content": "hello"}
    if not body["messages"] or body["messages"][-1] != last:
        body["messages"] = body["messages"] + [last]
    if "stream_options" in body:
        body["stream"] = True
    options = body.get("ccs")
    if PROJECT and isinstance(options, dict) and isinstance(options.get("project_path"), str):
        options["project_path"] = PROJECT


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _session_has_budget(session_id):
    """Whether the session has a `max_budget_usd` of its own (what is left of it caps a run)."""
    if not isinstance(session_id, str) or not BASE_URL:
        return False
    request = urllib.request.Request(
        f"{BASE_URL}/api/sessions/{urllib.parse.quote(session_id, safe='')}/stats",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.load(answer)["stats"]["max_budget_usd"] is not None
    except Exception:
        return False


def _error_message(answer):
    """The message of an error body: ccs's `{"error": "..."}`, or the OpenAI and Anthropic
    shapes of /v1 (`{"error": {"message": "..."}}`)."""
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    return error if isinstance(error, str) else ""


def _header(response, name):
    for key, values in (response.headers or {}).items():
        if key.lower() == name:
            return values[0] if isinstance(values, list) and values else values
    return None


def _expected_server_error(case, response):
    """Why this 5xx is what the request asked for, or None."""
    body = case.body if isinstance(case.body, dict) else {}
    # /v1 requests carry ccs's options in `ccs`.
    if isinstance(body.get("ccs"), dict):
        body = body["ccs"]
    try:
        answer = response.json()
    except Exception:
        return None
    if not isinstance(answer, dict):
        return None
    error = _error_message(answer)
    if response.status_code == 502 and error.startswith("Reached maximum budget"):
        budget = body.get("max_budget_usd")
        if _number(budget) and budget < FAKE_COST_PER_CALL:
            return f"502: max_budget_usd {budget} is below the ${FAKE_COST_PER_CALL} of a run"
        if _session_has_budget(answer.get("session_id") or _header(response, "x-ccs-session-id")):
            return "502: its session's own max_budget_usd ran out"
    timeout = body.get("timeout_ms")
    if response.status_code == 504 and _number(timeout) and timeout < SHORT_TIMEOUT_MS:
        if error.startswith(f"claude did not finish within {timeout} ms"):
            return f"504: timeout_ms {timeout}"
    return None


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if getattr(failure, "code", None) != "ST101":  # not_a_server_error
        return True
    why = _expected_server_error(case, response)
    if why is None:
        return True
    if EXPECTED_LOG:
        with open(EXPECTED_LOG, "a") as log:
            log.write(f"{case.operation.label}: {why}\n")
    return False
