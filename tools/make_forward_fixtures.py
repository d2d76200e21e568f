"""Write tests/data/fwd_*.eml: one whole forwarding message per mail client, as each prints it.

Run once after changing a template: python3 tools/make_forward_fixtures.py
The forwarded original is always the same email, so tests can expect the same fields.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "data"
NOTE = "Logging this for the account, see below."
BODY = "Hi Rita,\n\nwhat would {seats} seats cost for a two-year term?\n\nThanks,\nPaula"
BODY_HTML = (
    "<p>Hi Rita,</p><p>what would {seats} seats cost for a two-year term?</p>"
    "<p>Thanks,<br>Paula</p>"
)

PLAIN: dict[str, tuple[str, str]] = {
    "gmail": (
        "Fwd: Pricing question",
        """{note}

---------- Forwarded message ---------
From: Paula Prospect <paula@umbrella.test>
Date: Thu, Nov 5, 2026 at 4:45 PM
Subject: Pricing question
To: Rita Rep <rita@acme.test>
Cc: Quinn Umbrella <quinn@umbrella.test>


{body}
""",
    ),
    "gmail_android": (
        "Fwd: Pricing question",
        """{note}

---------- Forwarded message ---------
From: Paula Prospect <paula@umbrella.test>
Date: Thu, 5 Nov 2026, 16:45
Subject: Pricing question
To: Rita Rep <rita@acme.test>


{body}
""",
    ),
    "gmail_ios": (
        "Fwd: Pricing question",
        """{note}

Sent from Gmail Mobile

---------- Forwarded message ---------
From: Paula Prospect <paula@umbrella.test>
Date: Thu, 5 Nov 2026 at 16:45
Subject: Pricing question
To: Rita Rep <rita@acme.test>


{body}
""",
    ),
    "apple_mail": (
        "Fwd: Pricing question",
        """{note}

Begin forwarded message:

From: Paula Prospect <paula@umbrella.test>
Subject: Pricing question
Date: 5 November 2026 at 22:45:00 CET
To: Rita Rep <rita@acme.test>
Cc: Quinn Umbrella <quinn@umbrella.test>

{body}
""",
    ),
    "iphone": (
        "Fwd: Pricing question",
        """{note}

Sent from my iPhone

Begin forwarded message:

From: Paula Prospect <paula@umbrella.test>
Date: 5 November 2026 at 22:45:00 CET
To: Rita Rep <rita@acme.test>
Subject: Pricing question

\ufeff{body}
""",
    ),
    "outlook_desktop": (
        "FW: Pricing question",
        """{note}

-----Original Message-----
From: Paula Prospect <paula@umbrella.test>
Sent: Thursday, November 5, 2026 4:45 PM
To: Rita Rep <rita@acme.test>
Cc: Quinn Umbrella <quinn@umbrella.test>
Subject: Pricing question

{body}
""",
    ),
    "outlook_2016_de": (
        "WG: Pricing question",
        """{note}

Von: Paula Prospect <paula@umbrella.test>
Gesendet: Donnerstag, 5. November 2026 22:45
An: Rita Rep <rita@acme.test>
Cc: Quinn Umbrella <quinn@umbrella.test>
Betreff: Pricing question

{body}
""",
    ),
    "outlook_com": (
        "Fw: Pricing question",
        """{note}

________________________________
From: Paula Prospect <paula@umbrella.test>
Sent: Thursday, November 5, 2026 21:45
To: Rita Rep <rita@acme.test>
Subject: Pricing question

{body}
""",
    ),
    "yahoo": (
        "Fw: Pricing question",
        """{note}

----- Forwarded Message -----
From: Paula Prospect <paula@umbrella.test>
To: Rita Rep <rita@acme.test>
Sent: Thursday, November 5, 2026, 04:45:00 PM EST
Subject: Pricing question

{body}
""",
    ),
    "samsung_android": (
        "Fwd: Pricing question",
        """{note}

Sent from my Galaxy


-------- Original message --------
From: Paula Prospect <paula@umbrella.test>
Date: 11/5/26 16:45 (GMT-05:00)
To: Rita Rep <rita@acme.test>
Subject: Pricing question

{body}
""",
    ),
    "windows_live_mail": (
        "Fw: Pricing question",
        """{note}

----- Original Message -----
From: "Paula Prospect" <paula@umbrella.test>
To: "Rita Rep" <rita@acme.test>
Sent: Thursday, November 05, 2026 4:45 PM
Subject: Pricing question

{body}
""",
    ),
    "thunderbird": (
        "Fwd: Pricing question",
        """{note}


-------- Forwarded Message --------
Subject: \tPricing question
Date: \tThu, 5 Nov 2026 16:45:00 -0500
From: \tPaula Prospect <paula@umbrella.test>
To: \tRita Rep <rita@acme.test>
CC: \tQuinn Umbrella <quinn@umbrella.test>



{body}
""",
    ),
    "ionos_fr": (
        "TR: Pricing question",
        """{note}

-------- Message d'origine --------
De : Paula Prospect <paula@umbrella.test>
Date : 05/11/2026 22:45
À : Rita Rep <rita@acme.test>
Objet : Pricing question

{body}
""",
    ),
    "zoho": (
        "Fwd: Pricing question",
        """{note}

============ Forwarded message ============
From: Paula Prospect <paula@umbrella.test>
To: Rita Rep <rita@acme.test>
Date: Thu, 05 Nov 2026 16:45:00 -0500
Subject: Pricing question
============ Forwarded message ============

{body}
""",
    ),
    "quoted_unknown_client": (
        "Fwd: Pricing question",
        """{note}

> From: Paula Prospect <paula@umbrella.test>
> Date: Thu, 5 Nov 2026 16:45:00 -0500
> To: Rita Rep <rita@acme.test>
> Subject: Pricing question
>
"""
        + "\n".join("> " + line if line else ">" for line in BODY.splitlines())
        + "\n",
    ),
}

HTML: dict[str, tuple[str, str]] = {
    "gmail_html": (
        "Fwd: Pricing question",
        """<div dir="ltr"><div>{note}</div><br>\
<div class="gmail_quote"><div dir="ltr" class="gmail_attr">\
---------- Forwarded message ---------<br>\
From: <strong class="gmail_sendername" dir="auto">Paula Prospect</strong> <span dir="auto">\
&lt;<a href="mailto:paula@umbrella.test">paula@umbrella.test</a>&gt;</span><br>\
Date: Thu, Nov 5, 2026 at 4:45&#8239;PM<br>Subject: Pricing question<br>\
To: Rita Rep &lt;<a href="mailto:rita@acme.test">rita@acme.test</a>&gt;<br></div><br><br>\
<div dir="ltr">{body}</div></div></div>""",
    ),
    "new_outlook_html_de": (
        "WG: Pricing question",
        """<html><head>\
<style>p{{margin:0}}</style></head>\
<body><div style="font-family:Aptos"><p>{note}</p></div>\
<hr style="display:inline-block;width:98%" tabindex="-1"><div id="divRplyFwdMsg" dir="ltr">\
<font face="Calibri, sans-serif" style="font-size:11pt" color="#000000"><b>Von:</b> Paula Prospect \
&lt;paula@umbrella.test&gt;<br><b>Gesendet:</b> Donnerstag, 5. November 2026 22:45<br>\
<b>An:</b> Rita Rep &lt;rita@acme.test&gt;<br><b>Betreff:</b> Pricing question</font>\
<div>&nbsp;</div></div><div>{body}</div></body></html>""",
    ),
    "outlook_com_html": (
        "Fw: Pricing question",
        """<html><body><div>{note}</div>\
<div id="appendonsend"></div><hr style="display:inline-block;width:98%">\
<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" color="#000000" \
style="font-size:11pt"><b>From:</b> Paula Prospect &lt;paula@umbrella.test&gt;<br>\
<b>Sent:</b> Thursday, November 5, 2026 21:45<br><b>To:</b> Rita Rep \
&lt;rita@acme.test&gt;<br><b>Subject:</b> Pricing question</font><div>&nbsp;</div></div>\
<div dir="ltr">{body}</div></body></html>""",
    ),
}


def outer(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Rita Rep <rita@acme.test>"
    message["To"] = "forward@capture.localhost"
    message["Subject"] = subject
    message["Date"] = "Fri, 06 Nov 2026 09:12:00 +0100"
    return message


def seats(client: str) -> int:
    """A different figure per client, so each fixture is its own email once unwrapped."""
    return 100 + 10 * sorted([*PLAIN, *HTML]).index(client)


def main() -> None:
    for client, (subject, template) in PLAIN.items():
        message = outer(subject)
        message["Message-ID"] = f"<fwd-{client}@mail.acme.test>"
        body = BODY.format(seats=seats(client))
        message.set_content(template.format(note=NOTE, body=body, seats=seats(client)))
        (OUT / f"fwd_{client}.eml").write_bytes(message.as_bytes(policy=SMTP))
    for client, (subject, template) in HTML.items():
        message = outer(subject)
        message["Message-ID"] = f"<fwd-{client}@mail.acme.test>"
        body = BODY_HTML.format(seats=seats(client))
        message.set_content(template.format(note=NOTE, body=body), subtype="html")
        (OUT / f"fwd_{client}.eml").write_bytes(message.as_bytes(policy=SMTP))


if __name__ == "__main__":
    main()
