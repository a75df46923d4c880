#!/usr/bin/env python3
"""Write the sample contacts CSV shipped in the package (about 200 invented people).

    python bench/make_sample.py [--out src/contactbook/contacts/sample_contacts.csv]

Deterministic: the same file every run, so the sample only changes when this
script does. Every person and company is invented; the domains are made up.
A few people are fixed because tests and demos search for them: Tom Brooks,
Dan and Daniel Brooks, Ada Hendricks, a plus-addressed email, and one of each
kind of name the search must handle (accents, hyphen, apostrophe, particle).
"""

from __future__ import annotations

import argparse
import csv
import random
import unicodedata
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src/contactbook/contacts/sample_contacts.csv"
SEED = 20260101
PEOPLE = 200

# (first names, last names) by naming tradition; each person draws both from one tradition.
NAMES: dict[str, tuple[list[str], list[str]]] = {
    "english": (
        ["Olivia", "James", "Harriet", "Oliver", "Grace", "Henry", "Molly", "Samuel", "Ruby"],
        ["Whitfield", "Ashdown", "Pembury", "Calloway", "Harrow", "Thornbury", "Blakemore"],
    ),
    "american": (
        ["Madison", "Tyler", "Brooke", "Caleb", "Jordan", "Megan", "Travis", "Kayla", "Wesley"],
        ["Sullivan", "Hargrove", "McAllister", "Dawson", "Pruitt", "Whitaker", "Colburn"],
    ),
    "irish": (
        ["Siobhán", "Ciarán", "Aoife", "Niamh", "Declan", "Róisín", "Eoin"],
        ["O'Neil", "Ó Briain", "McCarthy", "Fitzgerald", "Donnelly", "O'Sullivan"],
    ),
    "french": (
        ["François", "Anne-Marie", "Hélène", "Jérôme", "Amélie", "Théo", "Léa", "Benoît"],
        ["Dubois", "Lefèvre", "Moreau", "Girard", "Fontaine", "Marchand", "Rousseau"],
    ),
    "german": (
        ["Jürgen", "Katrin", "Matthias", "Lena", "Jörg", "Annika", "Felix", "Sabine"],
        ["Müller", "Schäfer", "Hoffmann", "Weißmann", "Krüger", "Vogel", "Brandt"],
    ),
    "spanish": (
        ["Lucía", "Alejandro", "María José", "Javier", "Inés", "Sergio", "Carmen", "Álvaro"],
        ["López", "de la Cruz", "Martínez", "Jiménez", "Navarro", "Ortega", "Serrano"],
    ),
    "latin_american": (
        ["Valentina", "Mateo", "Camila", "Santiago", "Ximena", "Diego", "Renata"],
        ["Hernández", "Castillo", "Rojas", "Mendoza", "Vargas", "Aguilar"],
    ),
    "portuguese": (
        ["João", "Beatriz", "Gonçalo", "Mariana", "Thiago", "Larissa"],
        ["Conceição", "Almeida", "Gonçalves", "Ribeiro", "Carvalho", "dos Santos"],
    ),
    "italian": (
        ["Giulia", "Marco", "Chiara", "Lorenzo", "Francesca", "Matteo"],
        ["Rossi", "Bianchi", "Esposito", "Colombo", "De Luca", "Ferraro"],
    ),
    "scandinavian": (
        ["Søren", "Ingrid", "Astrid", "Lars", "Sigrid", "Mikkel", "Freja"],
        ["Andersen", "Lindqvist", "Bjørnstad", "Halvorsen", "Sjöberg", "Nygård"],
    ),
    "dutch": (
        ["Sanne", "Joris", "Femke", "Bram", "Noor", "Thijs"],
        ["van der Berg", "de Vries", "Jansen", "Visser", "van Dijk", "Bakker"],
    ),
    "polish": (
        ["Agnieszka", "Paweł", "Katarzyna", "Tomasz", "Zofia", "Łukasz"],
        ["Kowalczyk", "Nowak", "Wróbel", "Mazur", "Krawczyk", "Dudek"],
    ),
    "greek": (
        ["Eleni", "Nikos", "Dimitra", "Yannis", "Zoë", "Kostas"],
        ["Georgiou", "Alexiou", "Nikolaou", "Antoniou", "Christodoulou"],
    ),
    "indian": (
        ["Priya", "Arjun", "Ananya", "Rohan", "Kavya", "Vikram", "Meera", "Aditya"],
        ["Sharma", "Iyer", "Reddy", "Chatterjee", "Menon", "Kulkarni", "Bhatt"],
    ),
    "chinese": (
        ["Wei", "Mei Ling", "Jun", "Xiaoyu", "Hao", "Yan"],
        ["Zhang", "Liu", "Chen", "Huang", "Zhou", "Lin"],
    ),
    "japanese": (
        ["Haruka", "Kenji", "Yui", "Takumi", "Aiko", "Ren"],
        ["Takahashi", "Yamamoto", "Nakamura", "Kobayashi", "Sato", "Fujita"],
    ),
    "korean": (
        ["Ji-woo", "Min-jun", "Seo-yeon", "Hyun", "Da-eun"],
        ["Kim", "Park", "Choi", "Jung", "Kang"],
    ),
    "vietnamese": (
        ["Linh", "Minh", "Thao", "Quang", "Ngoc"],
        ["Nguyen", "Tran", "Pham", "Le", "Vu"],
    ),
    "nigerian": (
        ["Chiamaka", "Oluwaseun", "Ngozi", "Emeka", "Funmilayo", "Tunde"],
        ["Okafor", "Adeyemi", "Eze", "Balogun", "Nwosu", "Okonkwo"],
    ),
    "east_african": (
        ["Wanjiru", "Otieno", "Amani", "Akinyi", "Baraka"],
        ["Kamau", "Odhiambo", "Mwangi", "Njoroge", "Wekesa"],
    ),
    "arabic": (
        ["Layla", "Omar", "Yasmin", "Karim", "Nour", "Tariq"],
        ["Haddad", "Al-Masri", "Khalil", "Nasser", "Mansour"],
    ),
    "turkish": (
        ["Elif", "Emre", "Zeynep", "Burak", "Ayşe"],
        ["Yılmaz", "Demir", "Şahin", "Çelik", "Aydın"],
    ),
    "persian": (
        ["Shirin", "Dariush", "Parisa", "Kaveh"],
        ["Farahani", "Tehrani", "Mohammadi", "Rahimi"],
    ),
    "hebrew": (
        ["Noa", "Eitan", "Tamar", "Yael"],
        ["Levi", "Friedman", "Ben-David", "Shapiro"],
    ),
}

# Written in their own script; the email uses the transliteration.
NON_LATIN = [
    ("Дмитрий", "Соколов", "dmitry", "sokolov"),
    ("Анна", "Кузнецова", "anna", "kuznetsova"),
    ("Νίκος", "Παπαδόπουλος", "nikos", "papadopoulos"),
]

# (company, domain, industry, kinds of work done there)
COMPANIES = [
    ("Northwind", "northwind.io", "logistics software", "tech logistics"),
    ("Quarry Lane", "quarrylane.com", "construction materials", "industry"),
    ("Bluefinch", "bluefinch.co", "consumer apps", "tech"),
    ("Tidewater Freight", "tidewater-freight.com", "freight forwarding", "logistics shipping"),
    ("Copperleaf", "copperleaf.dev", "developer tools", "tech"),
    ("Harborlight Health", "harborlight.org", "community health", "health nonprofit"),
    ("Meridian Loom", "meridianloom.com", "textiles", "industry retail"),
    ("Saltmarsh Analytics", "saltmarsh-analytics.io", "data analytics", "tech ml"),
    ("Kestrel Works", "kestrelworks.dev", "warehouse robotics", "tech ml logistics"),
    ("Juniper Health", "juniperhealth.co", "digital health", "tech health"),
    ("Orchardline", "orchardline.com", "food distribution", "food logistics"),
    ("Ironbridge Legal", "ironbridge-legal.com", "commercial law", "legal"),
    ("Lumenfield", "lumenfield.io", "solar energy", "energy"),
    ("Cedarpoint Capital", "cedarpoint-capital.com", "private equity", "investing"),
    ("Velvet Orbit", "velvetorbit.io", "streaming media", "tech media"),
    ("Pebblestack", "pebblestack.dev", "cloud infrastructure", "tech"),
    ("Granite Peak Outfitters", "granitepeak.co", "outdoor retail", "retail"),
    ("Silverbirch Foundation", "silverbirch.org", "education", "education nonprofit"),
    ("Amberwave", "amberwave.io", "payments", "tech finance"),
    ("Foxglove Bio", "foxglove-bio.com", "biotech", "lab health"),
    ("Nimbus Forge", "nimbusforge.dev", "machine learning platforms", "tech ml"),
    ("Starling Mutual", "starling-mutual.com", "insurance", "insurance finance"),
    ("Willowcreek Labs", "willowcreek-labs.io", "applied AI research", "tech ml"),
    ("Brightharbor Hotels", "brightharbor.co", "hospitality", "hospitality"),
    ("Redkite Logistics", "redkite-logistics.com", "last-mile delivery", "logistics"),
    ("Lakeshore Ventures", "lakeshore-ventures.com", "venture capital", "investing"),
    ("Mosaic Grid", "mosaicgrid.io", "energy storage", "energy tech ml"),
    ("Thistledown Studio", "thistledown.co", "brand design", "design"),
    ("Coral Reef Shipping", "coralreef-shipping.com", "maritime shipping", "shipping logistics"),
    ("Bramblecart", "bramblecart.com", "e-commerce", "tech retail logistics"),
    ("Atlas Mill", "atlasmill.com", "industrial manufacturing", "industry"),
    ("Sunpath Mobility", "sunpath-mobility.io", "electric vehicles", "tech industry energy"),
    ("Quill & Ink Press", "quillandink.org", "publishing", "publishing"),
    ("Ember Analytics", "ember-analytics.io", "marketing analytics", "tech ml"),
    ("Driftwood Games", "driftwood-games.dev", "video games", "tech games"),
    ("Oak Hollow Properties", "oakhollow.co", "real estate", "property"),
    ("Parallax Security", "parallax-security.io", "cybersecurity", "tech"),
    ("Hollowpine Pharma", "hollowpine-pharma.com", "pharmaceuticals", "lab health industry"),
    ("Riverstone Consulting", "riverstone-consulting.com", "management consulting", "consulting"),
    ("Zephyr Foods", "zephyrfoods.co", "packaged foods", "food industry"),
    ("Lanternbay", "lanternbay.co.uk", "travel technology", "tech hospitality"),
]

# (role, what the person does: a verb phrase, kinds of company it fits; "" = any)
ROLES = [
    ("Head of procurement", "negotiates supplier contracts across three continents", ""),
    ("Senior account executive", "closes enterprise deals after long contract negotiations", ""),
    ("General counsel", "reviews commercial contracts and licensing agreements", ""),
    ("Contracts manager", "keeps hundreds of vendor contracts renewed on time", ""),
    ("Commercial lawyer", "negotiates joint ventures and drafts supply contracts", "legal"),
    ("Paralegal", "prepares due diligence files for acquisitions", "legal"),
    ("Machine learning engineer", "builds machine learning models for demand forecasting", "ml"),
    ("Data scientist", "turns messy sales data into pricing experiments", "tech retail finance"),
    ("ML research scientist", "publishes on efficient training of large language models", "ml"),
    ("Logistics coordinator", "plans cross-border shipments and customs paperwork", "logistics"),
    ("Supply chain analyst", "models warehouse capacity and inventory levels", "logistics food"),
    ("Fleet operations lead", "schedules a fleet of 400 delivery vans", "logistics"),
    ("Chief executive officer", "founded the company after a decade in the industry", ""),
    ("Chief financial officer", "leads fundraising, audits and investor relations", ""),
    ("VP of sales", "built the sales team from five to eighty people", ""),
    ("Partnerships director", "negotiates channel partnerships and revenue-sharing deals", ""),
    ("Product manager", "owns the mobile checkout and its roadmap", "tech"),
    ("Product designer", "designs onboarding flows and runs usability studies", "tech design"),
    ("Frontend engineer", "works on accessible, fast web interfaces", "tech"),
    ("Backend engineer", "maintains the billing services and their PostgreSQL databases", "tech"),
    ("Site reliability engineer", "keeps the platform up and the pager quiet", "tech"),
    ("Security engineer", "runs penetration tests and the bug bounty programme", "tech"),
    ("Engineering manager", "leads two platform teams and mentors new managers", "tech"),
    ("CTO", "sets the technical direction and hires senior engineers", "tech"),
    ("Marketing director", "runs brand campaigns in twelve markets", ""),
    ("Growth marketer", "experiments with lifecycle email and paid search", "tech retail"),
    ("Content strategist", "writes case studies and the company newsletter", ""),
    ("Customer success manager", "helps key accounts adopt new features and renew", "tech"),
    ("Support team lead", "handles escalations and writes the help centre", "tech retail"),
    ("HR business partner", "designs hiring processes and leadership training", ""),
    ("Talent acquisition lead", "recruits engineers and data scientists", "tech ml"),
    ("Office manager", "keeps two offices and a hybrid team running smoothly", ""),
    ("Financial controller", "closes the books monthly and manages tax filings", ""),
    ("Investment associate", "sources early-stage deals in climate and logistics", "investing"),
    ("Portfolio partner", "sits on the boards of six software companies", "investing"),
    ("Underwriter", "prices commercial property risks", "insurance"),
    ("Claims adjuster", "investigates large commercial claims", "insurance"),
    ("Clinical research coordinator", "runs phase II trials and patient recruitment", "health"),
    ("Regulatory affairs specialist", "prepares submissions for medical approval", "lab"),
    ("Lab manager", "runs a sequencing lab and its safety programme", "lab"),
    ("Community nurse", "coordinates home visits for elderly patients", "health"),
    ("Architect", "designs low-energy residential buildings", "property"),
    ("Property manager", "looks after a portfolio of commercial leases", "property"),
    ("Hotel operations director", "oversees six hotels and their guest experience", "hospitality"),
    ("Executive chef", "develops seasonal menus with local suppliers", "hospitality food"),
    ("Buyer", "sources organic produce and negotiates annual contracts with growers", "food"),
    ("Merchandiser", "plans seasonal ranges and store layouts", "retail"),
    ("Plant manager", "runs a factory of 300 people and its lean programme", "industry"),
    ("Quality engineer", "leads ISO audits and root-cause analysis", "industry lab"),
    ("Energy analyst", "forecasts grid demand with machine learning", "energy"),
    ("Project engineer", "builds utility-scale solar farms", "energy"),
    ("Game designer", "designs combat systems and multiplayer modes", "games"),
    ("Editor", "acquires non-fiction titles and edits first-time authors", "publishing media"),
    ("Programme officer", "manages grants for rural schools", "nonprofit"),
    ("Teacher trainer", "coaches teachers on digital classrooms", "education"),
    ("Management consultant", "advises retailers on operations and pricing", "consulting"),
    ("Business analyst", "maps processes and writes requirements for the ERP rollout", ""),
    ("Legal translator", "translates contracts between English, French and German", "legal"),
    ("Sales engineer", "runs technical demos and proof-of-concept projects", "tech"),
    ("Developer advocate", "speaks at conferences and writes tutorials on APIs", "tech"),
    ("Data engineer", "builds streaming pipelines and the data warehouse", "tech"),
    ("Risk analyst", "monitors fraud and chargebacks on card payments", "finance"),
    ("Compliance officer", "handles anti-money-laundering checks and audits", "finance"),
    ("Brand designer", "creates visual identities for start-ups", "design"),
    ("Shipping broker", "charters bulk carriers and negotiates freight rates", "shipping"),
    ("Customs specialist", "classifies goods and clears imports at three ports", "shipping"),
    ("Producer", "commissions documentaries and negotiates distribution rights", "media"),
]
ONE_PER_COMPANY = {"Chief executive officer", "Chief financial officer", "CTO", "General counsel"}

TEMPLATES = [
    "{role} at {company} who {does}.",
    "{role} at {company}, {industry_article} {industry} company; {does}.",
    "{first} is {article} {role_lower} at {company} and {does}.",
    "{role} with {years} years in {industry}, now at {company}.",
]

# People tests and demos rely on: (first, last, email, company, role).
FIXED = [
    ("Tom", "Brooks", "tbrooks@northwind.io", "Northwind", "Senior account executive"),
    (
        "Dan",
        "Brooks",
        "dan.brooks@redkite-logistics.com",
        "Redkite Logistics",
        "Logistics coordinator",
    ),
    (
        "Daniel",
        "Brooks",
        "daniel.brooks@cedarpoint-capital.com",
        "Cedarpoint Capital",
        "Investment associate",
    ),
    (
        "Ada",
        "Hendricks",
        "ada.hendricks@willowcreek-labs.io",
        "Willowcreek Labs",
        "ML research scientist",
    ),
    ("Tom", "Okafor", "tom+crm@lanternbay.co.uk", "Lanternbay", "VP of sales"),
    ("Zoë", "Antoniou", "zoe.antoniou@velvetorbit.io", "Velvet Orbit", "Producer"),
    ("Carmen", "de la Cruz", "cdelacruz@orchardline.com", "Orchardline", "Buyer"),
    (
        "François",
        "Dubois",
        "francois.dubois@ironbridge-legal.com",
        "Ironbridge Legal",
        "Commercial lawyer",
    ),
    ("Annika", "Müller", "annika.muller@atlasmill.com", "Atlas Mill", "Plant manager"),
    ("Lucía", "López", "lucia.lopez@amberwave.io", "Amberwave", "Risk analyst"),
    (
        "Søren",
        "Andersen",
        "sandersen@coralreef-shipping.com",
        "Coral Reef Shipping",
        "Shipping broker",
    ),
    ("Anne-Marie", "Fontaine", "annemarie@thistledown.co", "Thistledown Studio", "Brand designer"),
    ("Siobhán", "O'Neil", "siobhan.oneil@harborlight.org", "Harborlight Health", "Community nurse"),
]

Company = tuple[str, str, str, str]
ROLE_WORK = {role: does for role, does, _ in ROLES}

_ASCII = str.maketrans(
    {"ø": "o", "Ø": "o", "æ": "ae", "ß": "ss", "ł": "l", "Ł": "l", "ı": "i", "đ": "d"}
)


def ascii_slug(text: str) -> str:
    """``"Anne-Marie"`` -> ``"anne-marie"``, ``"O'Neil"`` -> ``"oneil"``, ``"de la Cruz"`` ->
    ``"delacruz"``."""
    folded = unicodedata.normalize("NFKD", text.translate(_ASCII))
    plain = "".join(ch for ch in folded if ch.isascii() and (ch.isalnum() or ch == "-"))
    return plain.lower()


def email_for(rng: random.Random, first: str, last: str, domain: str) -> str:
    f, la = ascii_slug(first).replace("-", ""), ascii_slug(last)
    style = rng.choices(
        ["first.last", "flast", "first", "firstl", "first_last", "last.first"],
        weights=[45, 20, 12, 8, 8, 7],
    )[0]
    local = {
        "first.last": f"{f}.{la}",
        "flast": f"{f[0]}{la}",
        "first": f,
        "firstl": f"{f}{la[0]}",
        "first_last": f"{f}_{la}",
        "last.first": f"{la}.{f}",
    }[style]
    return f"{local}@{domain}"


def a_or_an(word: str) -> str:
    if word[:2].isupper():  # an acronym is read letter by letter: "an ML ..."
        return "an" if word[0] in "AEFHILMNORSX" else "a"
    return "an" if word[0].lower() in "aeiou" else "a"


def bio_for(rng: random.Random, first: str, company: Company, role: str) -> str:
    does = ROLE_WORK[role]
    # "the CTO", "a backend engineer": keep acronyms, lower the rest.
    role_lower = role if role[:2].isupper() else role[0].lower() + role[1:]
    return rng.choice(TEMPLATES).format(
        role=role,
        role_lower=role_lower,
        article="the" if role in ONE_PER_COMPANY else a_or_an(role_lower),
        company=company[0],
        industry=company[2],
        industry_article=a_or_an(company[2]),
        does=does,
        first=first,
        years=rng.randint(4, 20),
    )


def job_for(rng: random.Random, taken: set[tuple[str, str]]) -> tuple[Company, str]:
    """A role and a company that has that kind of work; one CEO (etc.) per company."""
    while True:
        role, _, kinds = rng.choice(ROLES)
        fits = [c for c in COMPANIES if not kinds or set(kinds.split()) & set(c[3].split())]
        company = rng.choice(fits)
        if role not in ONE_PER_COMPANY or (company[0], role) not in taken:
            taken.add((company[0], role))
            return company, role


def people(rng: random.Random) -> list[list[str]]:
    companies = {company[0]: company for company in COMPANIES}
    rows: list[list[str]] = []
    taken_names = {(first, last) for first, last, *_ in FIXED}
    taken_emails = {email for _, _, email, *_ in FIXED}
    taken_jobs = {(company, role) for *_, company, role in FIXED}
    for first, last, email, company, role in FIXED:
        rows.append([first, last, email, bio_for(rng, first, companies[company], role)])
    for first, last, first_ascii, last_ascii in NON_LATIN:
        company, role = job_for(rng, taken_jobs)
        email = f"{first_ascii}.{last_ascii}@{company[1]}"
        taken_emails.add(email)
        rows.append([first, last, email, bio_for(rng, first, company, role)])
    traditions = sorted(NAMES)
    while len(rows) < PEOPLE:
        firsts, lasts = NAMES[rng.choice(traditions)]
        first, last = rng.choice(firsts), rng.choice(lasts)
        if (first, last) in taken_names:
            continue
        taken_names.add((first, last))
        company, role = job_for(rng, taken_jobs)
        email = email_for(rng, first, last, company[1])
        if email in taken_emails:
            email = email.replace("@", f"{len(rows)}@")
        taken_emails.add(email)
        rows.append([first, last, email, bio_for(rng, first, company, role)])
    # A little of what real exports hold: mixed-case emails, missing values.
    extras = rows[len(FIXED) + len(NON_LATIN) :]
    rng.shuffle(extras)
    for row in extras[:3]:
        local, domain = row[2].split("@")
        row[2] = f"{local.title()}@{domain}"
    for row in extras[3:5]:
        row[2] = ""
    for row in extras[5:8]:
        row[3] = ""
    rng.shuffle(rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the CSV")
    args = parser.parse_args()
    rows = people(random.Random(SEED))
    with args.out.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["First Name", "Last Name", "Email", "Description"])
        writer.writerows(rows)
    print(f"wrote {len(rows)} contacts to {args.out}")


if __name__ == "__main__":
    main()
