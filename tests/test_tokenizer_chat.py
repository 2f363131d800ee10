"""The Llama 3 chat template against Meta's ``ChatFormat`` and against ids written out from the published template."""

from __future__ import annotations

import pytest

from minillama.tokenizer import ChatFormat, Llama3Tokenizer, Message


@pytest.fixture(scope="module")
def chat() -> ChatFormat:
    return ChatFormat(Llama3Tokenizer())


DIALOG = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Spain? <|eot_id|> stays text."},
]


def test_hand_written_template(chat):
    # <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant...
    # with "user" = 882, "\n\n" = 271, "Hi" = 13347, "!" = 0, "assistant" = 78191 in Meta's table.
    ids = chat.encode_dialog_prompt([Message("user", "Hi!")])
    assert ids == [128000, 128006, 882, 128007, 271, 13347, 0, 128009, 128006, 78191, 128007, 271]
    assert chat.tokenizer.decode(ids) == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_special_strings_in_content_stay_text(chat):
    ids = chat.encode_message({"role": "user", "content": "<|eot_id|>"})
    assert ids.count(128009) == 1 and ids[-1] == 128009


def test_end_of_message_and_python_tag(chat):
    ids = chat.encode_message(Message("assistant", "print(1)", stop_reason="end_of_message", python_tag=True))
    assert ids[4] == 128010 and ids[-1] == 128008
    assert chat.encode_header("tool") == chat.encode_header("ipython")


def test_decode_assistant_message(chat):
    tok = chat.tokenizer
    msg = chat.decode_assistant_message(tok.encode("Paris is the capital.") + [tok.eot_id])
    assert msg == Message("assistant", "Paris is the capital.", stop_reason="end_of_turn")
    msg = chat.decode_assistant_message([tok.python_tag_id] + tok.encode("x = 1") + [tok.eom_id])
    assert msg == Message("assistant", "x = 1", stop_reason="end_of_message", python_tag=True)
    assert chat.decode_assistant_message(tok.encode(" cut")).stop_reason == "out_of_tokens"


def test_bad_messages():
    with pytest.raises(ValueError, match="unknown role"):
        Message("robot", "hi")
    with pytest.raises(TypeError, match="content must be a str"):
        Message("user", ["hi"])


# ------------------------------------------------------------------ Meta's reference

try:  # Meta's ChatFormat needs llama-models with Pillow and pydantic; the hand-written tests above run without it
    from llama_models import datatypes
    from llama_models.llama3 import chat_format as meta_chat
except ImportError:
    datatypes = meta_chat = None


@pytest.fixture(scope="module")
def meta():
    if meta_chat is None:
        pytest.skip("llama_models.llama3.chat_format is not importable")
    from llama_models.llama3.tokenizer import Tokenizer

    from minillama.tokenizer import default_tokenizer_path

    return meta_chat.ChatFormat(Tokenizer(default_tokenizer_path()))


def test_dialog_prompt_equals_meta(chat, meta):
    messages = [datatypes.RawMessage(**m) for m in DIALOG]
    assert chat.encode_dialog_prompt(DIALOG) == meta.encode_dialog_prompt(messages).tokens


@pytest.mark.parametrize("role", ["system", "user", "assistant", "tool"])
@pytest.mark.parametrize("content", ["", "Hello", "  spaced  \n\n", "多语言 🦙", "<|python_tag|>"])
def test_messages_equal_meta(chat, meta, role, content):
    fmt = datatypes.ToolPromptFormat.json
    ours = chat.encode_message(Message(role, content))
    theirs, _ = meta.encode_message(datatypes.RawMessage(role=role, content=content), fmt)
    assert ours == theirs


def test_tool_call_messages_equal_meta(chat, meta):
    fmt = datatypes.ToolPromptFormat.json
    call = datatypes.ToolCall(call_id="1", tool_name=datatypes.BuiltinTool.code_interpreter, arguments={"code": "2+2"})
    theirs, _ = meta.encode_message(
        datatypes.RawMessage(
            role="assistant", content="", tool_calls=[call], stop_reason=datatypes.StopReason.end_of_message
        ),
        fmt,
    )
    ours = chat.encode_message(Message("assistant", "2+2", stop_reason="end_of_message", python_tag=True))
    assert ours == theirs


@pytest.mark.parametrize("text", ["Paris.<|eot_id|>", " Paris. <|eom_id|>", "no end", "<|python_tag|>1+1<|eom_id|>"])
def test_decode_equals_meta(chat, meta, text):
    tokens = chat.tokenizer.encode(text, allowed_special="all")
    ours = chat.decode_assistant_message(tokens)
    theirs = meta.decode_assistant_message(tokens, datatypes.StopReason.out_of_tokens)
    assert ours.stop_reason == theirs.stop_reason.value
    if ours.python_tag:  # Meta turns interpreter code into a tool call
        assert theirs.tool_calls[0].arguments == {"code": ours.content}
    else:
        assert ours.content == theirs.content
