"""Secrets never show themselves: repr, str, format, asdict, logs, pickling."""

from __future__ import annotations

import copy
import dataclasses
import logging
import pickle

import pytest

from hftkit.core.secrets import REDACTED, Secret, reveal


def test_every_rendering_is_redacted():
    secret = Secret("hunter2-api-secret")
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", "{}".format(secret)):  # noqa: UP032
        assert "hunter2" not in text and REDACTED in text


def test_asdict_and_logging_keep_the_redaction(caplog):
    @dataclasses.dataclass
    class Config:
        key: Secret[bytes]

    config = Config(Secret(b"-----BEGIN PRIVATE KEY-----xyz"))
    assert "PRIVATE" not in repr(dataclasses.asdict(config))
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("config %s %r", config, config)
    assert "PRIVATE" not in caplog.text


def test_value_is_reachable_only_through_reveal():
    secret = Secret("abc")
    assert secret.reveal() == "abc" and reveal(secret) == "abc" and reveal("plain") == "plain"
    assert Secret(secret).reveal() == "abc"
    assert secret == "abc" and secret == Secret("abc") and secret != "abd"
    assert copy.deepcopy(secret) is secret
    with pytest.raises(AttributeError):
        secret._value = "x"  # type: ignore[misc]


def test_a_secret_is_never_pickled():
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(Secret("abc"))


def test_only_text_or_bytes():
    with pytest.raises(TypeError):
        Secret(123)  # type: ignore[arg-type]
