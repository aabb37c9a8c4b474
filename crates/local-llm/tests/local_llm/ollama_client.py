"""The official `ollama` Python client against local-llm (OLLAMA_HOST, MODEL):
list, show, ps, chat and generate, streamed and not. Prints what the client
read as one JSON object; the Rust test asserts on it."""

import json
import os

import ollama

client = ollama.Client(host=os.environ["OLLAMA_HOST"])
model = os.environ["MODEL"]
greedy = {"temperature": 0, "num_predict": 48}
question = [{"role": "user", "content": "What is the capital of France?"}]
seen = {}

seen["list"] = [m.model for m in client.list().models]
shown = client.show(model)
seen["show"] = {"family": shown.details.family, "template": shown.template or ""}
seen["ps"] = [m.model for m in client.ps().models]

whole = client.chat(model=model, messages=question, stream=False, options=greedy)
seen["chat"] = {
    "content": whole.message.content,
    "role": whole.message.role,
    "done_reason": whole.done_reason,
    "eval_count": whole.eval_count,
    "prompt_eval_count": whole.prompt_eval_count,
    "eval_duration": whole.eval_duration,
    "total_duration": whole.total_duration,
}
chunks = list(client.chat(model=model, messages=question, stream=True, options=greedy))
seen["chat_stream"] = {
    "pieces": len(chunks),
    "content": "".join(c.message.content for c in chunks),
    "done": chunks[-1].done,
    "done_reason": chunks[-1].done_reason,
    "eval_count": chunks[-1].eval_count,
}

prompt = "What is 2 + 2?"
generated = client.generate(model=model, prompt=prompt, stream=False, options=greedy)
seen["generate"] = {
    "response": generated.response,
    "done_reason": generated.done_reason,
    "context": len(generated.context or []),
}
parts = list(client.generate(model=model, prompt=prompt, stream=True, options=greedy))
seen["generate_stream"] = {
    "pieces": len(parts),
    "response": "".join(p.response for p in parts),
    "done_reason": parts[-1].done_reason,
}

try:
    client.chat(model="no-such-model", messages=question)
    seen["missing_model"] = None
except ollama.ResponseError as e:
    seen["missing_model"] = {"status": e.status_code, "error": e.error}

print(json.dumps(seen))
