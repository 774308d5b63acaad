"""Mail to people: verification and password-reset links. Pluggable: anything with
``send``; SMTP is the one the platform ships (stdlib smtplib in a thread, STARTTLS or
implicit TLS, optional login). Without a mailer (no SMTP_HOST), sign-up grants at once and
a password reset is an operator's action (``pixelrelay admin reset-link``)."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

log = logging.getLogger(__name__)


class Mailer(Protocol):
    async def send(self, to: str, subject: str, text: str) -> None: ...


@dataclass(frozen=True)
class SmtpMailer:
    host: str
    port: int
    sender: str
    username: str = ""
    password: str = ""
    security: str = "starttls"  # "starttls" | "tls" (implicit, port 465) | "none"
    timeout: float = 15.0

    async def send(self, to: str, subject: str, text: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message.set_content(text)
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        if self.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.security == "starttls":
                smtp.starttls(context=context)
            if self.username:
                smtp.login(self.username, self.password)
            smtp.send_message(message)


@dataclass(frozen=True)
class Links:
    """What the platform mails, with links to its own pages at ``public_url``."""

    mailer: Mailer
    public_url: str

    async def verification(self, to: str, token: str) -> None:
        await self._send(
            to,
            "Confirm your email for PixelRelay",
            "Welcome to PixelRelay. Confirm your email to receive your sign-up credits:\n\n"
            f"{self.public_url}/login?verify={token}\n\n"
            "The link works once, for 7 days. If you did not sign up, ignore this mail.\n",
        )

    async def password_reset(self, to: str, token: str) -> None:
        await self._send(
            to,
            "Reset your PixelRelay password",
            "Someone (we hope you) asked to reset the password of this PixelRelay account:\n\n"
            f"{self.public_url}/login?reset={token}\n\n"
            "The link works once, for 1 hour. If it was not you, ignore this mail: your "
            "password is unchanged.\n",
        )

    async def _send(self, to: str, subject: str, text: str) -> None:
        # Never raises: the request that asked has been answered already, and its answer
        # must not tell whether the address exists. Neither address nor link is logged.
        try:
            await self.mailer.send(to, subject, text)
        except Exception as exc:  # noqa: BLE001 - any failure of the mail server
            log.warning("mail not sent", extra={"error": type(exc).__name__, "subject": subject})
