"""The vocabulary of synthetic data: names, companies, time zones, and the campaign plan every
synthetic campaign runs (three emails, replies end the journey, no reply moves on)."""


def words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = words(
    "Ana Ben Carla Dev Elena Farid Grace Hiro Ines Jon Kofi Lena Marco Nadia Omar Priya "
    "Quinn Rosa Sam Tara Umar Vera Will Xia Yusuf Zoe Aaron Bea Chen Diego Emma Felix Gita "
    "Hugo Ivy Jade Karl Lucia Mia Noah Olga Pablo Rhea Sofia Theo Uma Victor Wen Yara Zane "
    "Amir Brooke Caleb Dana Eli Fatima Gabe Hana Isaac Julia Kenji Layla Mateo Nora Oscar "
    "Paula Ravi Sara"
)
LAST_NAMES = words(
    "Smith Johnson Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez Wilson "
    "Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez "
    "Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill "
    "Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez "
    "Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales "
    "Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard "
    "Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray Mendoza "
    "Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez "
    "Schmidt Muller Rossi Dubois Kowalski Tanaka Sato"
)
COMPANY_WORDS = words(
    "Acme Apex Blue Bright Cedar Clear Cloud Core Crest Delta Echo Ember Falcon Field Forge "
    "Frontier Granite Harbor Helix Horizon Iron Juniper Keystone Lumen Maple Meridian "
    "Nimbus North Nova Oak Orbit Peak Pine Pioneer Prism Quantum Quarry Radius River Sable "
    "Silver Spark Summit Terra Tidal Titan Vector Vertex Willow Zenith"
)
COMPANY_SUFFIXES = ("Labs", "Systems", "Group", "Software", "Analytics", "Health", "Logistics")
TITLES = (
    "VP Sales",
    "Head of Sales",
    "Sales Director",
    "Account Executive",
    "SDR Manager",
    "RevOps Lead",
    "CRO",
    "CEO",
    "CTO",
    "Head of Marketing",
    "Growth Lead",
    "Operations Manager",
)
# (IANA zone, ISO country, relative weight)
ZONES = (
    ("America/New_York", "US", 30),
    ("America/Chicago", "US", 14),
    ("America/Los_Angeles", "US", 16),
    ("America/Denver", "US", 5),
    ("America/Toronto", "CA", 5),
    ("Europe/London", "GB", 10),
    ("Europe/Berlin", "DE", 7),
    ("Europe/Paris", "FR", 5),
    ("Europe/Madrid", "ES", 2),
    ("Asia/Kolkata", "IN", 3),
    ("Asia/Singapore", "SG", 1),
    ("Australia/Sydney", "AU", 2),
)
SOURCES = ("csv-import", "webinar", "trade-show", "inbound-form", "partner-referral")
INDUSTRIES = ("saas", "fintech", "healthcare", "logistics", "retail", "manufacturing")

_SIGNOFF = "\n\n{{ sender.signature }}\n\nUnsubscribe: {{ unsubscribe_url }}"

PLAN = {
    "name": "Synthetic: intro, follow-up, breakup",
    "start": "intro",
    "steps": {
        "intro": {
            "type": "email",
            "variants": [
                {
                    "name": "question",
                    "weight": 1,
                    "subject": 'Quick question, {{ lead.first_name | default:"there" }}',
                    "text": 'Hi {{ lead.first_name | default:"there" }}, worth a call?' + _SIGNOFF,
                },
                {
                    "name": "value",
                    "weight": 1,
                    "subject": '{{ lead.company | default:"Your team" }} + Outreach',
                    "text": "Hi {{ lead.first_name }}, teams like yours book more meetings."
                    + _SIGNOFF,
                },
            ],
            "on": {"reply": "replied", "no_reply": {"after": "3d", "to": "follow_up"}},
        },
        "follow_up": {
            "type": "email",
            "thread_with": "intro",
            "variants": [{"name": "main", "text": "Circling back on my note below." + _SIGNOFF}],
            "on": {"reply": "replied", "no_reply": {"after": "4d", "to": "breakup"}},
        },
        "breakup": {
            "type": "email",
            "variants": [
                {"name": "main", "subject": "Closing the loop", "text": "Last note." + _SIGNOFF}
            ],
            "next": "done",
        },
        "replied": {"type": "end", "outcome": "replied"},
        "done": {"type": "end", "outcome": "no_response"},
    },
}
# The email steps in order, how long each waits for a reply, and the end step after each.
EMAIL_STEPS = ("intro", "follow_up", "breakup")
NO_REPLY_AFTER_DAYS = {"intro": 3, "follow_up": 4}
