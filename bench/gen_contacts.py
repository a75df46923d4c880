#!/usr/bin/env python3
"""Write a large, realistic contacts CSV for benchmarks (standard library only).

    python bench/gen_contacts.py --rows 1000000 --out /tmp/contacts-1m.csv [--seed 42]

The header is ``First Name,Last Name,Email,Description``, as in a Nimble export.
Every person and company is invented. The shape is chosen so that search
benchmarks meet the cases that matter, and the figures are printed at the end:

* first names follow a Zipf-like curve over ~340 names from many traditions
  (accents, a few Cyrillic and Greek): at 1,000,000 rows the commonest has
  ~60,000 people and a long run of names has 200-2,000;
* last names: ~425 common ones on a Zipf-like curve, a list of rare ones
  (``Hendricks``, ``Quenneville``, ...) with about 8 people per million rows,
  and 2% double-barrelled (``Moreau-Okafor``), nearly all unique;
* emails in six styles at ~1,000 invented company domains, unique (also when
  lower-cased): a counter is added to the local part when one repeats
  (``ada.moreau2@...``);
* descriptions are one sentence built from parts, so word frequencies are
  controlled: exactly one word, ``management``, is in ~30% of rows (and no
  other word with the stem ``manag``), while others (``negotiation``,
  ``contracts``, ``machine learning``, ``logistics``) are in a few percent;
* a little of real exports' mess: 0.5% of emails and 3% of descriptions blank,
  1% of emails in mixed case, 0.1% of descriptions on two lines (quoted).

With ``--nimble-fields`` the file also has the columns of a fuller Nimble export:
Phone, Mobile, Company, Title, Tags, City and Country (a phone for 90% of people in
the formats people type, a mobile for 40%; the employer is the company of the email's
domain; 0-3 tags from 30, ``customer`` the commonest at ~20%, ``board`` ~1%). They come
from a random stream of their own, so the first four columns are the same with or
without them.

Same seed, same file.
"""

from __future__ import annotations

import argparse
import csv
import random
import time
import unicodedata
from collections import Counter
from pathlib import Path

CHUNK = 50_000


def words(text: str) -> list[str]:
    """Names separated by whitespace."""
    return text.split()


def items(text: str) -> list[str]:
    """Names separated by ``|`` or line ends (they may contain spaces: ``de la Cruz``)."""
    return [item.strip() for item in text.replace("\n", "|").split("|") if item.strip()]


def phrases(text: str) -> list[str]:
    """Phrases separated by ``|``; a line end inside one is a space."""
    return [" ".join(item.split()) for item in text.split("|") if item.strip()]


FIRST_NAMES = words(
    """
James Mary John Patricia Robert Jennifer Michael Linda David Elizabeth William Barbara Richard
Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Lisa Matthew Nancy Anthony Betty Mark
Sandra Donald Ashley Steven Emily Paul Kimberly Andrew Donna Joshua Michelle Kenneth Carol Kevin
Amanda Brian Melissa George Deborah Timothy Stephanie Ronald Rebecca Jason Laura Edward Helen
Jeffrey Sharon Ryan Cynthia Jacob Kathleen Gary Amy Nicholas Shirley Eric Angela Jonathan Anna
Stephen Ruth Larry Brenda Justin Pamela Scott Nicole Brandon Katherine Benjamin Samantha Samuel
Christine Gregory Emma Alexander Catherine Frank Debra Patrick Virginia Raymond Rachel Jack
Carolyn Dennis Janet Jerry Maria Tyler Olivia Aaron Heather Jose Diane Adam Julie Nathan Joyce
Henry Victoria Zachary Kelly Douglas Christina Peter Lauren Kyle Joan Noah Evelyn Ethan Judith
Jeremy Megan Walter Andrea Christian Cheryl Keith Hannah Roger Jacqueline Terry Martha Austin
Gloria Sean Teresa Gerald Ann Carl Sara Harold Madison Dylan Frances Arthur Kathryn Lawrence
Janice Jordan Jean Jesse Abigail Bryan Alice Billy Judy Bruce Sophia Gabriel Grace Joe Denise
Logan Amber Alan Doris Juan Marilyn Albert Danielle Willie Beverly Elijah Isabella Randy Theresa
Wayne Diana Vincent Natalie Mason Brittany Roy Charlotte Ralph Marie Bobby Kayla Russell Alexis
Bradley Lori Philip Tom Ada Dan Siobhán Ciarán Aoife Niamh Declan Róisín Eoin François
Anne-Marie Hélène Jérôme Amélie Théo Léa Benoît Jean-Luc Mathilde Jürgen Katrin Matthias Lena
Jörg Annika Felix Sabine Lucía Alejandro Javier Inés Sergio Carmen Álvaro Valentina Mateo Camila
Santiago Ximena Diego Renata João Beatriz Gonçalo Mariana Thiago Larissa Giulia Marco Chiara
Lorenzo Francesca Matteo Søren Ingrid Astrid Lars Sigrid Mikkel Freja Sanne Joris Femke Bram
Noor Thijs Agnieszka Paweł Katarzyna Tomasz Zofia Łukasz Eleni Nikos Dimitra Yannis Zoë Kostas
Priya Arjun Ananya Rohan Kavya Vikram Meera Aditya Wei Jun Xiaoyu Hao Yan Haruka Kenji Yui
Takumi Aiko Ren Ji-woo Min-jun Seo-yeon Hyun Linh Minh Thao Quang Ngoc Chiamaka Oluwaseun Ngozi
Emeka Funmilayo Tunde Wanjiru Otieno Amani Akinyi Baraka Layla Omar Yasmin Karim Nour Tariq Elif
Emre Zeynep Burak Ayşe Shirin Dariush Parisa Kaveh Noa Eitan Tamar Yael Дмитрий Анна Ольга
Сергей Νίκος Ελένη Γιώργος
"""
)

LAST_NAMES = items(
    """
Smith|Johnson|Williams|Brown|Jones|Garcia|Miller|Davis|Rodriguez|Martinez|Hernandez|Lopez|Gonzalez
Wilson|Anderson|Thomas|Taylor|Moore|Jackson|Martin|Lee|Perez|Thompson|White|Harris|Sanchez|Clark
Ramirez|Lewis|Robinson|Walker|Young|Allen|King|Wright|Scott|Torres|Nguyen|Hill|Flores|Green
Adams|Nelson|Baker|Hall|Rivera|Campbell|Mitchell|Carter|Roberts|Gomez|Phillips|Evans|Turner|Diaz
Parker|Cruz|Edwards|Collins|Reyes|Stewart|Morris|Morales|Murphy|Cook|Rogers|Gutierrez|Ortiz
Morgan|Cooper|Peterson|Bailey|Reed|Kelly|Howard|Ramos|Kim|Cox|Ward|Richardson|Watson|Brooks
Chavez|Wood|James|Bennett|Gray|Mendoza|Ruiz|Hughes|Price|Alvarez|Castillo|Sanders|Patel|Myers
Long|Ross|Foster|Jimenez|Powell|Jenkins|Perry|Russell|Sullivan|Bell|Coleman|Butler|Henderson
Barnes|Gonzales|Fisher|Vasquez|Simmons|Romero|Jordan|Patterson|Alexander|Hamilton|Graham|Reynolds
Griffin|Wallace|Moreno|West|Cole|Hayes|Bryant|Herrera|Gibson|Ellis|Tran|Medina|Aguilar|Stevens
Murray|Ford|Castro|Marshall|Owens|Harrison|Fernandez|McDonald|Woods|Washington|Kennedy|Wells
Vargas|Henry|Chen|Freeman|Webb|Tucker|Guzman|Burns|Crawford|Olson|Simpson|Porter|Hunter|Gordon
Mendez|Silva|Shaw|Snyder|Mason|Dixon|Munoz|Hunt|Hicks|Holmes|Palmer|Wagner|Black|Robertson|Boyd
Rose|Stone|Salazar|Fox|Warren|Mills|Meyer|Rice|Schmidt|Garza|Daniels|Ferguson|Nichols|Stephens
Soto|Weaver|Ryan|Gardner|Payne|Grant|Dunn|Kelley|Spencer|Hawkins|Arnold|Pierce|Vazquez|Hansen
Peters|Santos|Hart|Bradley|Knight|Elliott|Cunningham|Duncan|Armstrong|Hudson|Carroll|Lane|Riley
Andrews|Alvarado|Ray|Delgado|Berry|Perkins|Hoffman|Johnston|Matthews|Pena|Richards|Contreras
Willis|Carpenter|Lawrence|Sandoval|Guerrero|George|Chapman|Rios|Estrada|Ortega|Watkins|Greene
Nunez|Wheeler|Valdez|Harper|Burke|Larson|Santiago|Maldonado|Morrison|Franklin|Carlson|Austin
Dominguez|Carr|Lawson|Jacobs|O'Brien|Lynch|Singh|Vega|Bishop|Montgomery|Oliver|Jensen|Harvey
Williamson|Gilbert|Dean|Sims|Espinoza|Howell|Li|Wong|Reid|Hanson|Le|McCoy|Garrett|Burton|Fuller
Wang|Weber|Welch|Rojas|Lucas|Marquez|Fields|Park|Yang|Little|Banks|Padilla|Day|Walsh|Bowman
Schultz|Luna|Fowler|Mejia|Davidson|Acosta|Brewer|May|Holland|Juarez|Newman|Pearson|Curtis
O'Neil|O'Sullivan|McCarthy|Fitzgerald|Donnelly|Dubois|Lefèvre|Moreau|Girard|Fontaine|Marchand
Rousseau|Müller|Schäfer|Hoffmann|Weißmann|Krüger|Vogel|Brandt|López|de la Cruz|Martínez
Jiménez|Navarro|Serrano|Hernández|Conceição|Almeida|Gonçalves|Ribeiro|Carvalho|dos Santos
Rossi|Bianchi|Esposito|Colombo|De Luca|Ferraro|Andersen|Lindqvist|Bjørnstad|Halvorsen|Sjöberg
Nygård|van der Berg|de Vries|Jansen|Visser|van Dijk|Bakker|Kowalczyk|Nowak|Wróbel|Mazur
Krawczyk|Georgiou|Alexiou|Nikolaou|Antoniou|Sharma|Iyer|Reddy|Chatterjee|Menon|Kulkarni|Bhatt
Zhang|Liu|Huang|Zhou|Lin|Takahashi|Yamamoto|Nakamura|Kobayashi|Sato|Fujita|Choi|Jung|Kang|Pham
Vu|Okafor|Adeyemi|Eze|Balogun|Nwosu|Okonkwo|Kamau|Odhiambo|Mwangi|Njoroge|Wekesa|Haddad
Al-Masri|Khalil|Nasser|Mansour|Yılmaz|Demir|Şahin|Çelik|Aydın|Farahani|Tehrani|Mohammadi|Rahimi
Levi|Friedman|Ben-David|Shapiro|Соколов|Иванов|Кузнецов|Παπαδόπουλος|Οικονόμου
"""
)

RARE_LAST_NAMES = items(
    """
Hendricks|Quenneville|Ashcombe|Vandersloot|Trelawney|Okonjo-Birch|Fairweather|Lindgaard|Marchetti
Zellweger|Castellanos-Ruiz|Abernathy|Dunleavy|Thistlewood|Kirkegaard|Ravensworth|Oyelaran|Brightwater
Penhaligon|Szymanowski|Villeneuve|Halloran|Mbeki-Stone|Quintero|Ellsworth|Nakagawa-Price|Falkenrath
Wintermute|Achterberg|Goldfinch|Radcliffe|Ostrowska|Bellweather|Underhill|Kazantzidis|Ferreira-Lunn
"""
)
RARE_SHARE = 8e-6  # of rows, per rare surname: ~8 people per million rows
DOUBLE_BARRELLED_SHARE = 0.02

TRANSLITERATION = {
    "Дмитрий": "dmitry",
    "Анна": "anna",
    "Ольга": "olga",
    "Сергей": "sergey",
    "Νίκος": "nikos",
    "Ελένη": "eleni",
    "Γιώργος": "giorgos",
    "Соколов": "sokolov",
    "Иванов": "ivanov",
    "Кузнецов": "kuznetsov",
    "Παπαδόπουλος": "papadopoulos",
    "Οικονόμου": "oikonomou",
}

COMPANY_WORDS = words(
    """
north south blue red iron copper silver amber cedar maple willow juniper harbor river lake
stone granite quarry meadow orchard thistle bramble kestrel falcon heron starling fox otter
lumen ember nimbus zephyr atlas mosaic parallax quill lantern tide coral drift oak pine birch
"""
)
COMPANY_KINDS = words(
    """
works labs logistics freight analytics health foods systems capital studio shipping energy
grid mobility robotics media security bio pharma partners ventures cloud data retail
"""
)
TLDS = ["io", "com", "co", "dev", "org", "net", "co.uk", "de", "fr", "app"]

ROLES = items(
    """
Account executive|Sales director|Head of procurement|General counsel|Software engineer
Data scientist|Machine learning engineer|Logistics coordinator|Supply chain analyst|Founder
Chief executive officer|Chief financial officer|CTO|Product lead|Product designer|Buyer
Backend engineer|Frontend engineer|Site reliability engineer|Security engineer|Recruiter
Marketing director|Growth marketer|Content strategist|Customer success lead|Support lead
HR business partner|Financial controller|Investment associate|Underwriter|Pharmacist
Clinical research coordinator|Lab lead|Architect|Hotel operations director|Executive chef
Plant director|Quality engineer|Energy analyst|Project engineer|Game designer|Editor
Programme officer|Teacher trainer|Consultant|Business analyst|Translator|Sales engineer
Developer advocate|Data engineer|Risk analyst|Compliance officer|Brand designer|Shipping broker
"""
)

# Each clause is a verb phrase; the first list is the only place "management" appears.
MANAGEMENT_CLAUSES = phrases(
    """
focused on risk management|leading vendor management for the group|responsible for product
management across three teams|specialising in change management|working on supply chain
management software|in charge of account management for key clients|running project management
for large rollouts|building tools for inventory management|teaching management skills to new
leads|advising on cash management and treasury|heading category management|overseeing fleet
management and routing|improving identity and access management|studying management of
clinical data|known for calm crisis management
"""
)
OTHER_CLAUSES = phrases(
    """
who negotiates supplier contracts across Europe|who closes enterprise deals after long
negotiation cycles|drafting and reviewing commercial contracts|building machine learning models
for demand forecasting|training machine learning models on sensor data|planning cross-border
logistics and customs paperwork|optimising last-mile logistics|designing onboarding flows|running
usability studies with customers|maintaining billing services on PostgreSQL|keeping the platform
up and the pager quiet|running penetration tests and the bug bounty programme|running brand
campaigns in twelve markets|experimenting with lifecycle email and paid search|writing case
studies and the company newsletter|helping customers adopt new features|designing hiring
processes and leadership training|closing the books every month|sourcing early-stage deals in
climate tech|pricing commercial property risks|running phase II clinical trials|designing
low-energy homes|overseeing six hotels and their guests|developing seasonal menus|running a
lean factory of 300 people|leading ISO audits and root-cause analysis|forecasting grid demand
|building utility-scale solar farms|designing multiplayer game modes|editing first-time
authors|awarding grants to rural schools|coaching teachers on digital classrooms|mapping
processes for an ERP rollout|translating legal documents between English and German|running
technical demos and pilots|speaking at conferences about APIs|building streaming data
pipelines|monitoring fraud on card payments|handling anti-money-laundering checks|creating
visual identities for start-ups|chartering bulk carriers and negotiating freight rates|with a
background in economics|who previously worked in consulting|based in Lisbon|based in Nairobi
|based in Singapore|based in Toronto|working remotely from Kraków|with a passion for open
source|who mentors first-time founders|fluent in Spanish and Portuguese
"""
)
MANAGEMENT_SHARE = 0.31  # of non-blank descriptions: ~30% of all rows
BLANK_EMAIL_SHARE = 0.005
MIXED_CASE_EMAIL_SHARE = 0.01
BLANK_DESCRIPTION_SHARE = 0.03
TWO_LINE_DESCRIPTION_SHARE = 0.001
SECOND_LINES = ["Met at a trade fair in Hamburg.", "Prefers calls in the morning (CET)."]

EMAIL_STYLES = ["first.last", "flast", "first", "firstl", "first_last", "last.first"]
EMAIL_STYLE_WEIGHTS = [45, 20, 10, 10, 8, 7]

_ASCII = str.maketrans({"ø": "o", "æ": "ae", "ß": "ss", "ł": "l", "Ł": "l", "ı": "i"})


def ascii_slug(name: str) -> str:
    """The email form of a name: ``"Zoë"`` -> ``"zoe"``, ``"de la Cruz"`` -> ``"delacruz"``."""
    if name in TRANSLITERATION:
        return TRANSLITERATION[name]
    folded = unicodedata.normalize("NFKD", name.translate(_ASCII))
    return "".join(ch for ch in folded if ch.isascii() and ch.isalnum()).lower()


def zipf_cum_weights(count: int, exponent: float) -> list[float]:
    total, cumulative = 0.0, []
    for rank in range(1, count + 1):
        total += rank**-exponent
        cumulative.append(total)
    return cumulative


def companies(rng: random.Random) -> list[tuple[str, str]]:
    """(company name, domain) pairs, every combination of the word lists, shuffled."""
    pairs = [
        (f"{word.title()} {kind.title()}", f"{word}{kind}.{TLDS[(i + j) % len(TLDS)]}")
        for i, word in enumerate(COMPANY_WORDS)
        for j, kind in enumerate(COMPANY_KINDS)
    ]
    rng.shuffle(pairs)
    return pairs


TAGS = words(
    """
customer lead partner investor vendor prospect newsletter event-2026 webinar conference
referral churned renewal vip press supplier reseller advisor alumni recruiter candidate
trial enterprise smb emea apac americas priority cold-lead board
"""
)
JOB_TITLES = phrases(
    """
Account Executive|Head of Logistics|Chief Financial Officer|Procurement Manager|Software
Engineer|Operations Director|Sales Lead|Founder|Partner|Data Scientist|Office Manager|
Marketing Director|Buyer|Legal Counsel|Product Manager|Chief Executive Officer|Analyst
"""
)
CITIES = [
    ("Lisbon", "Portugal"), ("Berlin", "Germany"), ("London", "United Kingdom"),
    ("New York", "United States"), ("San Francisco", "United States"), ("Toronto", "Canada"),
    ("São Paulo", "Brazil"), ("Lagos", "Nigeria"), ("Nairobi", "Kenya"), ("Mumbai", "India"),
    ("Singapore", "Singapore"), ("Sydney", "Australia"), ("Tokyo", "Japan"),
    ("Kraków", "Poland"), ("Zürich", "Switzerland"), ("Athens", "Greece"),
]  # fmt: skip
TAG_CUM_WEIGHTS = zipf_cum_weights(len(TAGS), 1.0)
PHONE_FORMATS = ["+1 ({a}) {b}-{c}", "{a}-{b}-{c}", "({a}) {b} {c}", "+1{a}{b}{c}", "{a}.{b}.{c}"]


def nimble_fields(rng: random.Random, firm: str) -> tuple[str, ...]:
    """Phone, Mobile, Company, Title, Tags, City, Country for one person."""

    def phone() -> str:
        digits = rng.randrange(200, 999), rng.randrange(200, 999), rng.randrange(0, 10_000)
        pattern = rng.choice(PHONE_FORMATS)
        return pattern.format(a=digits[0], b=digits[1], c=f"{digits[2]:04d}")

    tags = sorted(set(rng.choices(TAGS, cum_weights=TAG_CUM_WEIGHTS, k=rng.choice((0, 1, 2, 3)))))
    city, country = rng.choice(CITIES)
    return (
        phone() if rng.random() < 0.9 else "",
        phone() if rng.random() < 0.4 else "",
        firm,
        rng.choice(JOB_TITLES),
        "; ".join(tags),
        city,
        country,
    )


NIMBLE_HEADER = ["Phone", "Mobile", "Company", "Title", "Tags", "City", "Country"]


def generate(
    rows: int, out: Path, seed: int, *, with_nimble_fields: bool = False
) -> dict[str, Counter[str]]:
    rng = random.Random(seed)
    extra_rng = random.Random(seed * 7919 + 1)
    firsts = FIRST_NAMES[:]
    rng.shuffle(firsts)  # which names are common depends on the seed, not on list order
    lasts = LAST_NAMES[:]
    rng.shuffle(lasts)
    first_cum = zipf_cum_weights(len(firsts), 0.7)
    last_cum = zipf_cum_weights(len(lasts), 0.9)
    firm_list = companies(rng)
    firm_cum = zipf_cum_weights(len(firm_list), 0.8)
    first_slugs = {name: ascii_slug(name) for name in firsts}
    last_slugs = {name: ascii_slug(name) for name in lasts + RARE_LAST_NAMES}
    rare_share = RARE_SHARE * len(RARE_LAST_NAMES)

    seen_emails: dict[int, int] = {}
    first_counts: Counter[str] = Counter()
    last_counts: Counter[str] = Counter()
    management = 0

    with out.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        header = ["First Name", "Last Name", "Email", "Description"]
        writer.writerow(header + (NIMBLE_HEADER if with_nimble_fields else []))
        done = 0
        while done < rows:
            n = min(CHUNK, rows - done)
            chunk_firsts = rng.choices(firsts, cum_weights=first_cum, k=n)
            chunk_lasts = rng.choices(lasts, cum_weights=last_cum, k=n)
            chunk_firms = rng.choices(firm_list, cum_weights=firm_cum, k=n)
            styles = rng.choices(EMAIL_STYLES, weights=EMAIL_STYLE_WEIGHTS, k=n)
            roles = rng.choices(ROLES, k=n)
            others = rng.choices(OTHER_CLAUSES, k=n)
            managements = rng.choices(MANAGEMENT_CLAUSES, k=n)
            partners = rng.choices(lasts, k=n)
            random_ = rng.random
            out_rows = []
            for i in range(n):
                first, last = chunk_firsts[i], chunk_lasts[i]
                name_roll = random_()
                if name_roll < rare_share:
                    last = RARE_LAST_NAMES[int(name_roll / RARE_SHARE)]
                elif name_roll > 1 - DOUBLE_BARRELLED_SHARE and partners[i] != last:
                    last = f"{last}-{partners[i]}"
                    if last not in last_slugs:
                        last_slugs[last] = ascii_slug(last)
                firm, domain = chunk_firms[i]
                f, la = first_slugs[first], last_slugs[last]
                style = styles[i]
                if style == "first.last":
                    local = f"{f}.{la}"
                elif style == "flast":
                    local = f"{f[0]}{la}"
                elif style == "first":
                    local = f
                elif style == "firstl":
                    local = f"{f}{la[0]}"
                elif style == "first_last":
                    local = f"{f}_{la}"
                else:
                    local = f"{la}.{f}"
                email = f"{local}@{domain}"
                key = hash(email)
                repeats = seen_emails.get(key, 0)
                seen_emails[key] = repeats + 1
                if repeats:
                    local = f"{local}{repeats + 1}"
                    email = f"{local}@{domain}"
                email_roll = random_()
                if email_roll < BLANK_EMAIL_SHARE:
                    email = ""
                elif email_roll < BLANK_EMAIL_SHARE + MIXED_CASE_EMAIL_SHARE:
                    email = f"{local.title()}@{domain}"
                bio_roll = random_()
                if bio_roll < BLANK_DESCRIPTION_SHARE:
                    description = ""
                else:
                    if random_() < MANAGEMENT_SHARE:
                        description = f"{roles[i]} at {firm}, {managements[i]}."
                        management += 1
                    else:
                        description = f"{roles[i]} at {firm}, {others[i]}."
                    if bio_roll > 1 - TWO_LINE_DESCRIPTION_SHARE:
                        description += "\n" + SECOND_LINES[i % 2]
                row = (first, last, email, description)
                if with_nimble_fields:
                    row += nimble_fields(extra_rng, firm)
                out_rows.append(row)
            writer.writerows(out_rows)
            first_counts.update(chunk_firsts)
            last_counts.update(row[1] for row in out_rows)
            done += n
    return {"first": first_counts, "last": last_counts, "management": Counter(m=management)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example: python bench/gen_contacts.py --rows 1000000 --out /tmp/contacts-1m.csv",
    )
    parser.add_argument("--rows", type=int, required=True, help="number of contacts to write")
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument(
        "--nimble-fields",
        action="store_true",
        help="also write Phone, Mobile, Company, Title, Tags, City and Country",
    )
    args = parser.parse_args()
    if args.rows < 0:
        parser.error("--rows must be 0 or more")

    started = time.perf_counter()
    counts = generate(args.rows, args.out, args.seed, with_nimble_fields=args.nimble_fields)
    seconds = time.perf_counter() - started
    size = args.out.stat().st_size
    rate = args.rows / seconds if seconds else 0
    print(
        f"wrote {args.rows:,} rows ({size / 1e6:.1f} MB) to {args.out} "
        f"in {seconds:.1f} s ({rate:,.0f} rows/s)"
    )
    if args.rows:
        firsts, lasts = counts["first"], counts["last"]
        top_first, top_count = firsts.most_common(1)[0]
        mid = sum(1 for c in firsts.values() if 200 <= c <= 2000)
        rare = sum(1 for name in RARE_LAST_NAMES if 0 < lasts[name] < 20)
        share = counts["management"]["m"] / args.rows
        print(
            f"first names: {len(firsts)} distinct, commonest {top_first!r} x{top_count:,}, "
            f"{mid} with 200-2,000 people; last names: {len(lasts):,} distinct, "
            f"{rare} rare ones with under 20 people; 'management' in {share:.0%} of rows"
        )


if __name__ == "__main__":
    main()
