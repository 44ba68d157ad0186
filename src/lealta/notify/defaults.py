"""The templates shipped with Lealta, in Spanish and English.

A key, channel and language without a row in ``notification_templates`` uses these. E-mail
gets the subject, text and HTML; the inbox the subject and the short text; SMS and push the
short text. Placeholders (see README "Notifications"): ``member`` (``name``, ``customer_id``),
``balance``, ``tier`` and ``next_tier`` (``name``), ``progress`` (percent), ``amount_needed``
(formatted for the tier basis), ``points``, ``coupon`` (``code``, ``expires_at``),
``reward`` (``name``), ``expiring`` (``points``, ``on``), ``cockpit_url``,
``unsubscribe_url``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Default:
    subject: str
    text: str
    html: str
    short: str


_FOOTER_TEXT = {
    "es": "\n\nTu espacio: {{ cockpit_url }}\nDarte de baja: {{ unsubscribe_url }}\n",
    "en": "\n\nYour space: {{ cockpit_url }}\nUnsubscribe: {{ unsubscribe_url }}\n",
}
_FOOTER_HTML = {
    "es": '<p><a href="{{ cockpit_url }}">Tu espacio</a> · '
    '<a href="{{ unsubscribe_url }}">Darte de baja</a></p>',
    "en": '<p><a href="{{ cockpit_url }}">Your space</a> · '
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a></p>',
}
_PROGRESS = {
    "es": "{% if next_tier %} Te faltan {{ amount_needed }} para subir a nivel"
    " {{ next_tier.name }}.{% endif %}",
    "en": "{% if next_tier %} {{ amount_needed }} more to reach {{ next_tier.name }}.{% endif %}",
}

_TEXTS: dict[str, dict[str, tuple[str, str, str]]] = {
    # key → language → (subject, body sentence, short text)
    "points_earned": {
        "es": (
            "Has ganado {{ points|number }} puntos",
            "Hola {{ member.name }}, has ganado {{ points|number }} puntos. Tu saldo es de"
            " {{ balance|number }} puntos." + _PROGRESS["es"],
            "Has ganado {{ points|number }} puntos. Saldo: {{ balance|number }}.",
        ),
        "en": (
            "You earned {{ points|number }} points",
            "Hello {{ member.name }}, you earned {{ points|number }} points. Your balance is"
            " {{ balance|number }} points." + _PROGRESS["en"],
            "You earned {{ points|number }} points. Balance: {{ balance|number }}.",
        ),
    },
    "tier_changed": {
        "es": (
            "¡Felicidades! Has subido a nivel {{ tier.name }}",
            "Hola {{ member.name }}, ahora eres nivel {{ tier.name }}." + _PROGRESS["es"],
            "Ahora eres nivel {{ tier.name }}.",
        ),
        "en": (
            "Congratulations! You are now {{ tier.name }}",
            "Hello {{ member.name }}, you are now in tier {{ tier.name }}." + _PROGRESS["en"],
            "You are now in tier {{ tier.name }}.",
        ),
    },
    "threshold_reached": {
        "es": (
            "Tienes un regalo: {{ reward.name }}",
            "Hola {{ member.name }}, has alcanzado {{ crossed|money }} en compras y te regalamos"
            " {{ reward.name }}.{% if coupon %} Tu cupón: {{ coupon.code }}"
            "{% if coupon.expires_at %}, válido hasta el {{ coupon.expires_at|date }}"
            "{% endif %}.{% endif %}",
            "Tienes un regalo: {{ reward.name }}{% if coupon %} ({{ coupon.code }}){% endif %}.",
        ),
        "en": (
            "A gift for you: {{ reward.name }}",
            "Hello {{ member.name }}, you reached {{ crossed|money }} in purchases and we give"
            " you {{ reward.name }}.{% if coupon %} Your coupon: {{ coupon.code }}"
            "{% if coupon.expires_at %}, valid until {{ coupon.expires_at|date }}"
            "{% endif %}.{% endif %}",
            "A gift for you: {{ reward.name }}{% if coupon %} ({{ coupon.code }}){% endif %}.",
        ),
    },
    "points_expiring": {
        "es": (
            "{{ expiring.points|number }} puntos caducan pronto",
            "Hola {{ member.name }}, {{ expiring.points|number }} de tus puntos caducan el"
            " {{ expiring.on|date }}. Úsalos antes en tu espacio.",
            "{{ expiring.points|number }} puntos caducan el {{ expiring.on|date }}.",
        ),
        "en": (
            "{{ expiring.points|number }} points expire soon",
            "Hello {{ member.name }}, {{ expiring.points|number }} of your points expire on"
            " {{ expiring.on|date }}. Use them first in your space.",
            "{{ expiring.points|number }} points expire on {{ expiring.on|date }}.",
        ),
    },
    # Workflow templates (the demo programme's ``workflows``).
    "near_tier": {
        "es": (
            "Te faltan {{ amount_needed }} para subir a nivel {{ next_tier.name }}",
            "Hola {{ member.name }}, te faltan {{ amount_needed }} para subir a nivel"
            " {{ next_tier.name }}. ¡Ya casi lo tienes!",
            "Te faltan {{ amount_needed }} para subir a nivel {{ next_tier.name }}.",
        ),
        "en": (
            "{{ amount_needed }} more to reach {{ next_tier.name }}",
            "Hello {{ member.name }}, you are {{ amount_needed }} away from"
            " {{ next_tier.name }}. Almost there!",
            "{{ amount_needed }} more to reach {{ next_tier.name }}.",
        ),
    },
    "coupon_reminder": {
        "es": (
            "Tu cupón {{ coupon.code }} te espera",
            "Hola {{ member.name }}, aún no has usado tu cupón {{ coupon.code }}"
            "{% if coupon.expires_at %}, válido hasta el {{ coupon.expires_at|date }}{% endif %}.",
            "Tu cupón {{ coupon.code }} te espera.",
        ),
        "en": (
            "Your coupon {{ coupon.code }} is waiting",
            "Hello {{ member.name }}, you have not used your coupon {{ coupon.code }} yet"
            "{% if coupon.expires_at %}; it is valid until {{ coupon.expires_at|date }}"
            "{% endif %}.",
            "Your coupon {{ coupon.code }} is waiting.",
        ),
    },
    "coupon_thanks": {
        "es": (
            "Gracias por usar tu cupón",
            "Hola {{ member.name }}, gracias por tu compra con el cupón {{ coupon.code }}."
            "{% if survey_url %} ¿Nos cuentas qué tal? {{ survey_url }}{% endif %}",
            "Gracias por usar tu cupón.",
        ),
        "en": (
            "Thank you for using your coupon",
            "Hello {{ member.name }}, thank you for your purchase with coupon {{ coupon.code }}."
            "{% if survey_url %} How did we do? {{ survey_url }}{% endif %}",
            "Thank you for using your coupon.",
        ),
    },
    "birthday": {
        "es": (
            "¡Feliz cumpleaños, {{ member.name }}!",
            "¡Feliz cumpleaños, {{ member.name }}!{% if coupon %} Te regalamos un descuento"
            " con el cupón {{ coupon.code }}.{% endif %}",
            "¡Feliz cumpleaños!{% if coupon %} Cupón: {{ coupon.code }}.{% endif %}",
        ),
        "en": (
            "Happy birthday, {{ member.name }}!",
            "Happy birthday, {{ member.name }}!{% if coupon %} Here is a discount with coupon"
            " {{ coupon.code }}.{% endif %}",
            "Happy birthday!{% if coupon %} Coupon: {{ coupon.code }}.{% endif %}",
        ),
    },
    "we_miss_you": {
        "es": (
            "Te echamos de menos",
            "Hola {{ member.name }}, hace tiempo que no te vemos. Tienes"
            " {{ balance|number }} puntos esperándote.",
            "Te echamos de menos: tienes {{ balance|number }} puntos.",
        ),
        "en": (
            "We miss you",
            "Hello {{ member.name }}, it has been a while. You have {{ balance|number }}"
            " points waiting for you.",
            "We miss you: you have {{ balance|number }} points.",
        ),
    },
}

DEFAULTS: dict[tuple[str, str], Default] = {
    (key, lang): Default(
        subject=subject,
        text=body + _FOOTER_TEXT[lang],
        html=f"<p>{body}</p>" + _FOOTER_HTML[lang],
        short=short,
    )
    for key, languages in _TEXTS.items()
    for lang, (subject, body, short) in languages.items()
}
"""(key, language) → the shipped template."""

KEYS: tuple[str, ...] = tuple(_TEXTS)
"""The keys of the shipped templates."""


def variant(key: str, channel: str, language: str) -> tuple[str, str, str | None] | None:
    """(subject, text, html) of the shipped template for a channel, if any."""
    found = DEFAULTS.get((key, language))
    if found is None:
        return None
    if channel == "email":
        return found.subject, found.text, found.html
    if channel == "inapp":
        return found.subject, found.short, None
    return "", found.short, None
