"""The Llama 3 chat template: how a conversation becomes one sequence of token ids.

A dialog is flattened into ``<|begin_of_text|>`` followed by one block per message,

    <|start_header_id|>{role}<|end_header_id|>\\n\\n{content}<|eot_id|>

and, to ask for a reply, the header of an assistant message with no content. The model was fine-tuned to write
the assistant's content and stop with ``<|eot_id|>`` (end of turn) or ``<|eom_id|>`` (end of message: it called a
tool and waits for the result, which comes back as a message from the ``ipython`` role). Special tokens come only
from the template: the content of a message is encoded as plain text, so a user who types ``<|eot_id|>`` gets the
characters, not the control token. The ids match ``llama_models.llama3.chat_format.ChatFormat`` for text messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .llama3 import Llama3Tokenizer

__all__ = ["ChatFormat", "Message"]

Role = Literal["system", "user", "assistant", "ipython"]
StopReason = Literal["end_of_turn", "end_of_message", "out_of_tokens"]
_ROLES = ("system", "user", "assistant", "ipython")


@dataclass
class Message:
    """One message of a dialog.

    ``stop_reason`` matters for assistant messages: ``"end_of_message"`` closes them with ``<|eom_id|>`` instead of
    ``<|eot_id|>``. ``python_tag`` marks an assistant message whose content is code for the built-in interpreter
    (Llama 3.1's ``<|python_tag|>``). The role ``"tool"`` is accepted as a synonym of ``"ipython"``.
    """

    role: Role
    content: str
    stop_reason: StopReason | None = None
    python_tag: bool = False

    def __post_init__(self) -> None:
        if self.role == "tool":
            self.role = "ipython"
        if self.role not in _ROLES:
            raise ValueError(f"unknown role {self.role!r}; expected one of {', '.join(_ROLES)} (or 'tool')")
        if not isinstance(self.content, str):
            raise TypeError(f"message content must be a str, got {type(self.content).__name__}")


def _as_message(message: Message | Mapping) -> Message:
    return message if isinstance(message, Message) else Message(**message)


class ChatFormat:
    """Encode dialogs to ids and decode the assistant's reply, following Meta's Llama 3 template.

    >>> chat = ChatFormat(Llama3Tokenizer())
    >>> ids = chat.encode_dialog_prompt([{"role": "user", "content": "Hi!"}])
    >>> chat.tokenizer.decode(ids)
    '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\n'
    """

    def __init__(self, tokenizer: Llama3Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.special = tokenizer.special_tokens

    def encode_header(self, role: Role) -> list[int]:
        """``<|start_header_id|>role<|end_header_id|>\\n\\n`` as ids."""
        role = "ipython" if role == "tool" else role
        return [
            self.special["<|start_header_id|>"],
            *self.tokenizer.encode(role),
            self.special["<|end_header_id|>"],
            *self.tokenizer.encode("\n\n"),
        ]

    def encode_message(self, message: Message | Mapping) -> list[int]:
        """Header, content (as plain text) and the closing ``<|eot_id|>`` (or ``<|eom_id|>``) of one message."""
        message = _as_message(message)
        ids = self.encode_header(message.role)
        if message.role == "assistant" and message.python_tag:
            ids.append(self.special["<|python_tag|>"])
        ids.extend(self.tokenizer.encode(message.content))
        end_of_message = message.role == "assistant" and message.stop_reason == "end_of_message"
        ids.append(self.special["<|eom_id|>" if end_of_message else "<|eot_id|>"])
        return ids

    def encode_dialog_prompt(self, messages: Iterable[Message | Mapping]) -> list[int]:
        """``<|begin_of_text|>``, every message, then an open assistant header for the model to complete."""
        ids = [self.special["<|begin_of_text|>"]]
        for message in messages:
            ids.extend(self.encode_message(message))
        ids.extend(self.encode_header("assistant"))
        return ids

    def decode_assistant_message(self, tokens: Sequence[int], stop_reason: StopReason = "out_of_tokens") -> Message:
        """Turn the ids the model generated after the assistant header into a :class:`Message`.

        As in Meta's reference: strip spaces, drop a repeated assistant header, note a leading ``<|python_tag|>``,
        and let a final ``<|eot_id|>``/``<|eom_id|>`` set the stop reason (``stop_reason`` is kept otherwise).
        """
        content = self.tokenizer.decode(tokens).strip(" ")
        header = "<|start_header_id|>assistant<|end_header_id|>\n\n"
        content = content.removeprefix(header)
        python_tag = content.startswith("<|python_tag|>")
        content = content.removeprefix("<|python_tag|>")
        if content.endswith("<|eot_id|>"):
            content, stop_reason = content.removesuffix("<|eot_id|>"), "end_of_turn"
        elif content.endswith("<|eom_id|>"):
            content, stop_reason = content.removesuffix("<|eom_id|>"), "end_of_message"
        return Message("assistant", content, stop_reason=stop_reason, python_tag=python_tag)
