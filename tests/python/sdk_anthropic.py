"""Anthropic's official Python client against ccs (with the fake claude CLI), offline.

Run by tests/it/sdk_clients.rs with CCS_BASE (http://127.0.0.1:PORT) and CCS_KEY; prints
`RESULT {json}` last, which the Rust test checks against the fake CLI's log. Its last step
spends the address's wrong-key allowance (to see a 429): run it against a server of its own.
"""
import json
import os

import anthropic

BASE, KEY = os.environ["CCS_BASE"], os.environ["CCS_KEY"]
client = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=60)
result = {}

# A plain message: `system` is Claude Code's appended system prompt.
m = client.messages.create(
    model="sonnet", max_tokens=1024, system="Be brief.", messages=[{"role": "user", "content": "hello"}]
)
assert m.type == "message" and m.role == "assistant", m
assert [b.type for b in m.content] == ["text"] and m.content[0].text == "You said: hello", m.content
assert m.stop_reason == "end_turn"
assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0, m.usage
assert m.model_extra["ccs"]["continued"] is False

raw = client.messages.with_raw_response.create(model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
assert raw.headers["x-ccs-session-id"] == raw.parse().model_extra["ccs"]["session_id"]

# A two-call conversation: the second call's history matches the first answer, so ccs
# continues that session with the new message only.
messages = [{"role": "user", "content": [{"type": "text", "text": "my name is Ada"}]}]
first = client.messages.create(model="sonnet", max_tokens=1024, messages=messages)
messages += [
    {"role": "assistant", "content": first.content},
    {"role": "user", "content": "what is my name?"},
]
second = client.messages.create(model="sonnet", max_tokens=1024, messages=messages)
assert second.model_extra["ccs"]["continued"] is True, second.model_extra
assert second.model_extra["ccs"]["session_id"] == first.model_extra["ccs"]["session_id"]
assert "earlier: my name is Ada" in second.content[0].text, second.content[0].text
result["conversation_session"] = first.model_extra["ccs"]["session_id"]

# Streaming, with the library's helper that puts the events together.
with client.messages.stream(
    model="sonnet", max_tokens=1024, messages=[{"role": "user", "content": "count to three"}]
) as stream:
    deltas = [text for text in stream.text_stream]
    final = stream.get_final_message()
assert "".join(deltas) == "You said: count to three" and len(deltas) > 1, deltas
assert final.content[0].text == "You said: count to three" and final.stop_reason == "end_turn", final
assert final.usage.output_tokens > 0, final.usage

# Raw events, in Anthropic's order.
events = [e.type for e in client.messages.create(
    model="sonnet", max_tokens=10, stream=True, messages=[{"role": "user", "content": "hi there"}]
)]
assert events[:2] == ["message_start", "content_block_start"], events
assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"], events
assert "content_block_delta" in events

# A run that fails while streaming raises the library's APIError.
try:
    with client.messages.stream(
        model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "@@fail=api"}]
    ) as failing:
        for _ in failing:
            pass
    raise AssertionError("a failed streamed run must raise")
except anthropic.APIError as e:
    assert "API Error" in str(e) or "failed" in str(e), e

try:
    client.messages.create(model="gpt-4o", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    raise AssertionError("an unknown model must be refused")
except anthropic.BadRequestError as e:
    assert e.status_code == 400 and e.body["error"]["type"] == "invalid_request_error", e.body

try:
    client.messages.create(
        model="sonnet", max_tokens=10, messages=[{"role": "user", "content": [{"type": "image", "source": {}}]}]
    )
    raise AssertionError("an image must be refused")
except anthropic.BadRequestError as e:
    assert "image" in e.message, e.message

assert "sonnet" in [m.id for m in client.models.list()]

wrong = anthropic.Anthropic(base_url=BASE, api_key="not-the-key", max_retries=0, timeout=60)
try:
    wrong.messages.create(model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    raise AssertionError("a wrong key must be refused")
except anthropic.AuthenticationError as e:
    assert e.status_code == 401 and e.body["error"]["type"] == "authentication_error", e.body

for attempt in range(20):
    try:
        wrong.models.list()
    except anthropic.AuthenticationError:
        continue
    except anthropic.RateLimitError as e:
        assert int(e.response.headers["retry-after"]) > 0, e.response.headers
        assert e.body["error"]["type"] == "rate_limit_error", e.body
        result["rate_limited_after"] = attempt
        break
else:
    raise AssertionError("wrong keys were never limited")

print("RESULT " + json.dumps(result))
