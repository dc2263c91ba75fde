"""Warmup mail content: conversation templates, generators, MIME and message tokens."""

from mailwarm.content._bank import TemplateBank, ThreadTemplate, builtin_bank
from mailwarm.content._generator import ContentGenerator, Draft, Persona, TemplateGenerator
from mailwarm.content._mime import build_message, render_message, reply_subject, text_to_html
from mailwarm.content._spintax import PLACEHOLDERS, SpintaxError, check_template, render
from mailwarm.content._token import make_message_id, verify_message_id

__all__ = [
    "PLACEHOLDERS",
    "ContentGenerator",
    "Draft",
    "Persona",
    "SpintaxError",
    "TemplateBank",
    "TemplateGenerator",
    "ThreadTemplate",
    "build_message",
    "builtin_bank",
    "check_template",
    "make_message_id",
    "render",
    "render_message",
    "reply_subject",
    "text_to_html",
    "verify_message_id",
]
