"""OpenAI's official Python client against ccs (with the fake claude CLI), offline.

Run by tests/it/sdk_clients.rs with CCS_BASE (http://127.0.0.1:PORT) and CCS_KEY; prints
`RESULT {json}` last, which the Rust test checks against the fake CLI's log. Its last step
spends the address's wrong-key allowance (to see a 429): run it against a server of its own.
"""
import json
import os

import openai

BASE, KEY = os.environ["CCS_BASE"], os.environ["CCS_KEY"]
client = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0, timeout=60)
result = {}

# A plain completion: the system message is Claude Code's appended system prompt.
r = client.chat.completions.create(
    model="sonnet",
    messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}],
)
assert r.object == "chat.completion", r
assert r.choices[0].message.role == "assistant"
assert r.choices[0].message.content == "You said: hello", r.choices[0].message.content
assert r.choices[0].finish_reason == "stop"
assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
ccs = r.model_extra["ccs"]
assert ccs["continued"] is False and ccs["cost_usd"] > 0 and ccs["task_id"] in r.id, ccs

# The headers say the session and the task.
raw = client.chat.completions.with_raw_response.create(model="sonnet", messages=[{"role": "user", "content": "hi"}])
assert raw.headers["x-ccs-session-id"] == raw.parse().model_extra["ccs"]["session_id"]
assert raw.headers["x-ccs-task-id"] == raw.parse().model_extra["ccs"]["task_id"]

# A two-call conversation, the way every OpenAI client holds one: the second call sends the
# whole history, and ccs continues the first call's session with the new message only.
messages = [{"role": "user", "content": "my name is Ada"}]
first = client.chat.completions.create(model="sonnet", messages=messages)
messages += [
    {"role": "assistant", "content": first.choices[0].message.content},
    {"role": "user", "content": "what is my name?"},
]
second = client.chat.completions.create(model="sonnet", messages=messages)
assert second.model_extra["ccs"]["continued"] is True, second.model_extra
assert second.model_extra["ccs"]["session_id"] == first.model_extra["ccs"]["session_id"]
assert "earlier: my name is Ada" in second.choices[0].message.content, second.choices[0].message.content
result["conversation_session"] = first.model_extra["ccs"]["session_id"]

# The session id sent back (ccs's extension field) continues a session too.
third = client.chat.completions.create(
    model="sonnet",
    messages=[{"role": "user", "content": "and now?"}],
    extra_body={"ccs": {"session_id": result["conversation_session"]}},
)
assert third.model_extra["ccs"]["session_id"] == result["conversation_session"]
assert "(turn 3;" in third.choices[0].message.content, third.choices[0].message.content

# Streaming: chunks as the CLI writes them, the usage last when asked.
stream = client.chat.completions.create(
    model="sonnet",
    messages=[{"role": "user", "content": "count to three"}],
    stream=True,
    stream_options={"include_usage": True},
)
chunks = list(stream)
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert text == "You said: count to three", text
assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1, "more than one text chunk"
assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0, chunks[-1]

# A run that fails while streaming raises the library's APIError.
try:
    for _ in client.chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": "@@fail=api"}], stream=True
    ):
        pass
    raise AssertionError("a failed streamed run must raise")
except openai.APIError as e:
    assert "API Error" in str(e) or "failed" in str(e), e

# Errors are the library's own exceptions.
try:
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    raise AssertionError("an unknown model must be refused")
except openai.BadRequestError as e:
    assert e.status_code == 400 and e.body["param"] == "model", e.body
    assert "GET /v1/models" in e.message

try:
    client.chat.completions.create(model="sonnet", messages=[{"role": "assistant", "content": "hi"}])
    raise AssertionError("a conversation must end with the user")
except openai.BadRequestError as e:
    assert "last message" in e.message, e.message

models = [m.id for m in client.models.list()]
assert "sonnet" in models and "opus" in models and "haiku" in models, models
assert client.models.retrieve("opus").id == "opus"
try:
    client.models.retrieve("gpt-4o")
    raise AssertionError("an unknown model has no page")
except openai.NotFoundError:
    pass

wrong = openai.OpenAI(base_url=f"{BASE}/v1", api_key="not-the-key", max_retries=0, timeout=60)
try:
    wrong.chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "hi"}])
    raise AssertionError("a wrong key must be refused")
except openai.AuthenticationError as e:
    assert e.status_code == 401, e

# Too many wrong keys from one address: 429 with Retry-After (this spends the address's
# allowance for a minute, so it comes last).
for attempt in range(20):
    try:
        wrong.models.list()
    except openai.AuthenticationError:
        continue
    except openai.RateLimitError as e:
        assert int(e.response.headers["retry-after"]) > 0, e.response.headers
        result["rate_limited_after"] = attempt
        break
else:
    raise AssertionError("wrong keys were never limited")

print("RESULT " + json.dumps(result))
