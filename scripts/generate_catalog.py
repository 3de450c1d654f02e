"""Deterministic generator for the sample outdoor-gear catalog of Summit & Trail Outfitters.

The committed sample is exactly the output of:

    python scripts/generate_catalog.py --count 320 --seed 7 --out data/catalog/products.jsonl

Also importable: ``generate_products(count, seed)`` and ``write_jsonl(products, path)``.
Only the standard library is used and nothing depends on time, uuids or hash order, so the same
count and seed always give byte-identical output. Products are drawn one after another from a
single ``random.Random(seed)``, so a larger count extends a smaller one: the first 320 products of
``generate_products(20000, 7)`` are the committed catalog.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

DEFAULT_COUNT = 320
DEFAULT_SEED = 7
DEFAULT_OUT = Path("data/catalog/products.jsonl")
CURRENCY = "EUR"

SpecValue = int | float | str
# Spec names starting with "_" only feed the description text; the others also become fields.
Specs = tuple[tuple[str, tuple[SpecValue, ...]], ...]


def words(text: str) -> tuple[str, ...]:
    """Whitespace-separated words as a tuple (keeps long name lists compact)."""
    return tuple(text.split())


def steps(low: int, high: int, step: int = 1) -> tuple[int, ...]:
    """The values low, low+step, ... up to and including high."""
    return tuple(range(low, high + 1, step))


@dataclass(frozen=True)
class Subtype:
    """One kind of product within a category; its texts may use ``{placeholders}``."""

    label: str  # "{volume_l}-litre daypack": used in prose
    noun: str  # "{volume_l} Daypack": ends the product name
    price: tuple[float, float]
    weight_g: tuple[int, int]
    adjectives: tuple[str, ...]
    uses: tuple[str, ...]
    materials: tuple[str, ...]
    features: tuple[str, ...]
    tags: tuple[str, ...]
    size_sets: tuple[tuple[str, ...], ...] = (("One size",),)
    sizing: Literal["fixed", "footwear", "apparel", "unisex-footwear"] = "fixed"
    weight_note: str = ""
    specs: Specs = ()
    lines: tuple[str, ...] = ()  # model-line suffixes; empty: the category's
    closings: tuple[str, ...] = ()  # empty: the category's
    kind: str = ""  # the subcategory field; empty: the label (for labels without placeholders)


@dataclass(frozen=True)
class Category:
    slug: str
    prefix: str
    share: int  # relative frequency in the catalog
    brands: tuple[str, ...]
    models: tuple[str, ...]
    lines: tuple[str, ...]
    colors: tuple[str, ...]
    closings: tuple[str, ...]
    subtypes: tuple[Subtype, ...]


OPENINGS = (
    "The {brand} {model} is {a_adj} {label} built for {use}.",
    "Designed for {use}, the {model} from {brand} is {a_adj} {label}.",
    "{brand} developed the {model} as {a_adj} {label} for {use}.",
    "Meet the {model}: {a_adj} {label} from {brand}, made for {use}.",
    "With {use} in mind, {brand} built the {model} as {a_adj} {label}.",
)

WEIGHT_LINES = (
    "It weighs {weight}{weight_note}.",
    "On the scale it comes in at {weight}{weight_note}.",
    "The listed weight is {weight}{weight_note}.",
    "Claimed weight is {weight}{weight_note}.",
)

# Footwear: (gender, possible first EU sizes, possible last EU sizes, weight note, weight factor).
FootwearRule = tuple[str, tuple[int, ...], tuple[int, ...], str, float]
FOOTWEAR_RULES: tuple[FootwearRule, ...] = (
    ("Men's", (39, 40, 41), (46, 47), " per pair in EU 42", 1.0),
    ("Women's", (36, 37), (41, 42), " per pair in EU 38", 0.85),
)
UNISEX_FOOTWEAR_RULE: FootwearRule = (
    "Unisex",
    (35, 36, 37),
    (44, 45, 46),
    " per pair in EU 41",
    1.0,
)
# Apparel: (gender, possible size runs, weight factor); every run contains M, the weighed size.
ApparelRule = tuple[str, tuple[tuple[str, ...], ...], float]
APPAREL_RULES: tuple[ApparelRule, ...] = (
    ("Men's", (("S", "M", "L", "XL"), ("S", "M", "L", "XL", "XXL")), 1.0),
    ("Women's", (("XS", "S", "M", "L"), ("XS", "S", "M", "L", "XL")), 0.88),
)

TENTS = Category(
    slug="tents",
    prefix="TNT",
    share=10,
    brands=("Fjellvik", "Cairnvale", "Larchmere", "Tundra Pike"),
    models=words("Skarn Varde Holm Brekka Tindur Lysa Kvist Morrow Fenwick Ossian Hale Corrie"),
    lines=("", "Pro", "Trek", "Plus"),
    colors=("Moss Green", "Sand", "Slate Grey", "Burnt Orange", "Olive", "Glacier Blue"),
    closings=(
        "Seams are taped at the factory, so it is ready to pitch straight out of the box.",
        "Dry it fully before storing it to protect the coatings and stop mildew.",
        "Pegs, guylines and a compression stuff sack are included.",
        "Spare pole sections and zip repairs are available through our repair service.",
        "Practise the pitch once at home before your first night out.",
    ),
    subtypes=(
        Subtype(
            label="backpacking tent",
            kind="ultralight backpacking tent",
            noun="Tent",
            price=(279, 649),
            weight_g=(780, 1650),
            weight_note=" packed",
            size_sets=(("1P",), ("1P", "2P"), ("2P",), ("2P", "3P")),
            adjectives=("ultralight", "featherweight", "minimalist"),
            uses=(
                "thru-hikes and long-distance treks",
                "fast-and-light weekends in the hills",
                "bikepacking trips where every gram counts",
            ),
            materials=(
                "The fly is 20D ripstop silnylon with a {waterproof_mm:,} mm hydrostatic head, "
                "paired with a tougher 30D floor.",
                "A siliconised 15D nylon canopy rated to {waterproof_mm:,} mm keeps the packed "
                "size small without skimping on weather protection.",
                "Its aluminium poles and 20D polyester fly ({waterproof_mm:,} mm) hold their "
                "shape when wet, so the pitch stays taut overnight.",
            ),
            features=(
                "It has {_doors}, and the vestibule is deep enough for boots and a 50-litre pack.",
                "A single hubbed pole set lets you pitch it in about three minutes.",
                "Mesh inner walls and two high vents keep condensation down on still nights.",
                "Inner and fly pitch together, which keeps the sleeping area dry in the rain.",
                "Packed, it is roughly the size of a one-litre water bottle.",
            ),
            tags=("ultralight", "backpacking", "3-season"),
            specs=(
                ("waterproof_mm", (1500, 2000, 2500, 3000)),
                ("_doors", ("a single side door", "two side doors")),
            ),
            lines=("", "UL", "Lite", "Air"),
        ),
        Subtype(
            label="freestanding dome tent",
            noun="Dome Tent",
            price=(199, 499),
            weight_g=(1900, 3400),
            weight_note=" packed",
            size_sets=(("2P",), ("2P", "3P"), ("3P",), ("3P", "4P")),
            adjectives=("stable", "easy-pitching", "weatherproof"),
            uses=(
                "backpacking in changeable weather",
                "canoe trips and lakeside camps",
                "camping on rocky ground where pegs barely hold",
            ),
            materials=(
                "Its polyester fly carries a {waterproof_mm:,} mm coating and a UV-resistant "
                "finish for long summers in the sun.",
                "Colour-coded aluminium poles and a 68D polyester floor rated to "
                "{waterproof_mm:,} mm make it easy to trust on wet ground.",
                "The 40D nylon fly is silicone-coated outside and PU-coated inside, with "
                "{waterproof_mm:,} mm of waterproofing.",
            ),
            features=(
                "Being freestanding, it stands on rock slabs and wooden platforms where pegs "
                "will not hold.",
                "It has {_doors} and two vestibules, so nobody climbs over a sleeping partner.",
                "Internal pockets and a gear loft keep headlamps and phones off the floor.",
                "Reflective guylines make the tent easy to find on a dark campsite.",
                "Fly-first pitching keeps the inner dry if you set up in the rain.",
            ),
            tags=("freestanding", "backpacking", "3-season"),
            specs=(
                ("waterproof_mm", steps(2000, 4000, 500)),
                ("_doors", ("a single side door", "two side doors")),
            ),
        ),
        Subtype(
            label="tunnel tent",
            noun="Tunnel Tent",
            price=(249, 599),
            weight_g=(2100, 3600),
            weight_note=" packed",
            size_sets=(("2P",), ("3P",), ("2P", "3P")),
            adjectives=("wind-shedding", "spacious", "all-weather"),
            uses=(
                "Scandinavian fell walking",
                "long treks in exposed, windy terrain",
                "Nordic summers with wind and rain",
            ),
            materials=(
                "The fly is a 30D silicone-coated nylon rated to {waterproof_mm:,} mm, with a "
                "reinforced ripstop floor.",
                "Three pre-bent aluminium arches and a {waterproof_mm:,} mm polyester fly shrug "
                "off gusts when the tent is pitched tail to the wind.",
            ),
            features=(
                "Inner and fly stay connected, so the whole tent goes up in one piece in under "
                "five minutes.",
                "A large porch at the entrance doubles as a sheltered cooking area.",
                "Vents at both ends create airflow that keeps condensation in check.",
                "Adjustable guy points on each arch let you tighten the pitch as the wind builds.",
            ),
            tags=("tunnel", "trekking", "3-season"),
            specs=(("waterproof_mm", steps(3000, 5000, 500)),),
        ),
        Subtype(
            label="four-season mountaineering tent",
            noun="Expedition Tent",
            price=(549, 899),
            weight_g=(2800, 4300),
            weight_note=" packed",
            size_sets=(("2P",), ("3P",), ("2P", "3P")),
            adjectives=("bombproof", "storm-worthy", "rugged"),
            uses=(
                "winter mountaineering",
                "high camps on alpine expeditions",
                "ski touring trips with nights on snow",
            ),
            materials=(
                "A 40D silicone-coated nylon fly rated to {waterproof_mm:,} mm and snow skirts "
                "around the base keep spindrift out.",
                "Its crossing aluminium poles and {waterproof_mm:,} mm fly are built to carry "
                "snow load and sustained storm winds.",
            ),
            features=(
                "Snow valances can be buried or weighed down with rocks for a wind-tight pitch.",
                "Two entrances mean you can always exit on the sheltered side.",
                "Internal guy attachments let you brace the poles during a storm.",
                "A fully solid inner tent holds warmth on cold nights at altitude.",
            ),
            tags=("4-season", "mountaineering", "winter"),
            specs=(("waterproof_mm", (4000, 5000, 6000)),),
            lines=("", "Pro", "Alpine", "XT"),
        ),
        Subtype(
            label="family camping tent",
            noun="Family Tent",
            price=(299, 749),
            weight_g=(7500, 14500),
            weight_note=" packed",
            size_sets=(("4P",), ("6P",), ("4P", "6P")),
            adjectives=("roomy", "sturdy", "comfortable"),
            uses=(
                "family campsite holidays",
                "festival weekends and group camps",
                "car camping with kids",
            ),
            materials=(
                "Its polyester flysheet is rated to {waterproof_mm:,} mm, and a blackout-coated "
                "inner keeps bedrooms dark on early summer mornings.",
                "Steel uprights, aluminium arches and a {waterproof_mm:,} mm polyester flysheet "
                "keep it steady through a week of campsite weather.",
            ),
            features=(
                "Two separate sleeping cabins sit either side of a living area with standing "
                "headroom.",
                "A sewn-in groundsheet keeps draughts and insects out.",
                "Large side windows with roll-down covers let in light without losing privacy.",
                "An electric hook-up port lets you run a cable to a campsite power post.",
            ),
            tags=("family", "camping", "car-camping"),
            specs=(("waterproof_mm", steps(2000, 4000, 500)),),
            lines=("", "Plus", "Comfort", "XL"),
        ),
    ),
)

SLEEPING_BAGS = Category(
    slug="sleeping-bags",
    prefix="SLB",
    share=9,
    brands=("Fjellvik", "Larchmere", "Nordkamm", "Cairnvale"),
    models=words(
        "Rime Nattsol Drift Kaldera Hearth Vetur Firn Aurora Stillwater Morgon Hollow Eider"
    ),
    lines=("", "Pro", "Lite", "Plus"),
    colors=("Forest Green", "Midnight Blue", "Rust", "Charcoal", "Ochre"),
    closings=(
        "Store it uncompressed in the supplied storage sack to preserve its loft.",
        "Pair it with a well-insulated sleeping mat, because the ground steals more heat than "
        "the air.",
        "Wear a dry base layer and a hat to bed to get the most out of the rating.",
        "See our sizing guide to choose between the available lengths.",
    ),
    subtypes=(
        Subtype(
            label="down mummy sleeping bag",
            noun="Down Sleeping Bag",
            price=(249, 549),
            weight_g=(650, 1300),
            weight_note=" in size Regular",
            size_sets=(("Regular",), ("Regular", "Long"), ("Regular", "Long", "Wide")),
            adjectives=("lightweight", "warm", "packable"),
            uses=(
                "three-season backpacking",
                "hut-to-hut tours and summer alpine camps",
                "trekking trips where pack space is tight",
            ),
            materials=(
                "It is filled with {fill_power} fill power responsibly sourced down inside a 10D "
                "nylon shell with a water-repellent finish.",
                "Box-wall baffles hold the {fill_power}-cuin down in place, so the loft stays "
                "even around your shoulders and feet.",
                "A 20D ripstop shell and {fill_power} fill power duck down give it a "
                "warmth-to-weight ratio that synthetic bags cannot match.",
            ),
            features=(
                "Its ISO 23537 comfort rating is {comfort_temp_c} °C.",
                "A contoured hood and a padded draught collar seal in heat when the temperature "
                "drops.",
                "A full-length two-way zip lets you vent your feet on warmer nights.",
                "Its trapezoid footbox gives your feet room without adding dead air space.",
                "It stuffs into the included compression sack and comes with a cotton storage bag.",
            ),
            tags=("down", "3-season", "backpacking"),
            specs=(("fill_power", steps(650, 900, 50)), ("comfort_temp_c", steps(-6, 4))),
        ),
        Subtype(
            label="synthetic mummy sleeping bag",
            noun="Synthetic Sleeping Bag",
            price=(99, 229),
            weight_g=(1100, 1900),
            weight_note=" in size Regular",
            size_sets=(("Regular",), ("Regular", "Long")),
            adjectives=("hard-wearing", "affordable", "versatile"),
            uses=(
                "wet-weather camping",
                "scout camps and youth trips",
                "cycle touring in the shoulder seasons",
            ),
            materials=(
                "Hollow-fibre synthetic insulation keeps most of its warmth even when damp, which "
                "makes it a safe bet for wet climates.",
                "Its layered, offset synthetic fill avoids cold spots at the seams, and the 40D "
                "polyester shell is easy to wipe clean.",
            ),
            features=(
                "Its comfort rating is {comfort_temp_c} °C (ISO 23537).",
                "A draught tube behind the zip stops cold air creeping in.",
                "It is machine washable at 30 °C, which makes it a good choice for hostels and "
                "scout camps.",
                "An inner stash pocket keeps a phone battery warm overnight.",
            ),
            tags=("synthetic", "3-season", "camping"),
            specs=(("comfort_temp_c", steps(-2, 8)),),
        ),
        Subtype(
            label="expedition down sleeping bag",
            noun="Expedition Sleeping Bag",
            price=(499, 649),
            weight_g=(1300, 2000),
            weight_note=" in size Regular",
            size_sets=(("Regular", "Long"), ("Regular", "Long", "Wide")),
            adjectives=("storm-ready", "ultra-warm", "heavily insulated"),
            uses=(
                "high-altitude expeditions",
                "polar trips and winter camping",
                "winter nights on snow",
            ),
            materials=(
                "It holds a generous fill of {fill_power} fill power goose down behind a "
                "waterproof-breathable shell fabric.",
                "Trapezoid baffles and {fill_power}-cuin goose down keep insulation where you "
                "need it on nights in the high mountains.",
            ),
            features=(
                "Its comfort rating is {comfort_temp_c} °C, enough for polar trips and high camps.",
                "A double draught collar and a shaped hood close down to a small breathing hole.",
                "Internal straps hold a sleeping mat inside, so you do not roll off it at night.",
                "A zip garage and an anti-snag strip make it easy to use with gloves on.",
            ),
            tags=("down", "winter", "expedition"),
            specs=(("fill_power", (800, 850, 900)), ("comfort_temp_c", steps(-22, -10, 2))),
            lines=("", "Pro", "Polar", "XT"),
        ),
        Subtype(
            label="rectangular camping sleeping bag",
            noun="Camping Sleeping Bag",
            price=(59, 129),
            weight_g=(1600, 2600),
            weight_note=" in size Regular",
            size_sets=(("Regular",), ("Regular", "Wide")),
            adjectives=("cosy", "roomy", "easy-care"),
            uses=(
                "summer campsites and festivals",
                "family camping",
                "sleepovers and guest beds",
            ),
            materials=(
                "A soft brushed polyester lining and 300 g/m² synthetic fill make it feel more "
                "like a duvet than a mountain bag.",
                "It combines a polyester taffeta shell with a cotton-feel lining and hollow-fibre "
                "insulation.",
            ),
            features=(
                "Its comfort rating is {comfort_temp_c} °C, ideal for summer campsites.",
                "Two bags of the same model zip together into a double.",
                "It unzips completely to use as a blanket on warm nights.",
                "A built-in pillow pocket turns a folded fleece into a quick pillow.",
            ),
            tags=("camping", "summer", "family"),
            specs=(("comfort_temp_c", steps(5, 12)),),
        ),
        Subtype(
            label="down backpacking quilt",
            noun="Down Quilt",
            price=(219, 389),
            weight_g=(450, 850),
            weight_note=" in size Regular",
            size_sets=(("Regular",), ("Regular", "Long")),
            adjectives=("minimalist", "ultralight", "versatile"),
            uses=(
                "thru-hiking and fastpacking",
                "warm-weather backpacking",
                "bikepacking with a tiny pack",
            ),
            materials=(
                "It is filled with {fill_power} fill power hydrophobic down inside a 10D nylon "
                "shell and liner.",
                "Its {fill_power}-cuin down sits in vertical baffles at the sides and horizontal "
                "ones in the middle to limit down migration.",
            ),
            features=(
                "Its comfort rating is {comfort_temp_c} °C when paired with an insulated mat.",
                "Pad straps clip the quilt to your sleeping mat so draughts cannot get underneath.",
                "A sewn footbox closes with a drawcord, while the top opens flat for warm nights.",
                "Without a hood or back insulation, it saves weight a mummy bag would carry.",
            ),
            tags=("down", "ultralight", "quilt"),
            specs=(("fill_power", steps(750, 900, 50)), ("comfort_temp_c", steps(-2, 8))),
        ),
    ),
)

BACKPACKS = Category(
    slug="backpacks",
    prefix="BPK",
    share=11,
    brands=("Cairnvale", "Tundra Pike", "Kestrel Ridge", "Quillpeak"),
    models=words("Arete Col Cirque Scree Ridgeback Lynx Marten Sable Kite Gannet Tarn Ghyll"),
    lines=("", "Pro", "Lite", "Trail"),
    colors=("Black", "Olive", "Cobalt", "Rust", "Grey", "Teal"),
    closings=(
        "See our sizing guide for how to measure your torso length.",
        "Wipe it clean with lukewarm water rather than putting it in the washing machine.",
        "Load heavy items close to your back and between your shoulder blades for the best carry.",
        "The straps adjust on the move, so you can fine-tune the fit as you go.",
    ),
    subtypes=(
        Subtype(
            label="{volume_l}-litre daypack",
            kind="daypack",
            noun="{volume_l} Daypack",
            price=(49, 129),
            weight_g=(520, 980),
            adjectives=("versatile", "comfortable", "well-organised"),
            uses=(
                "day hikes and summit pushes",
                "everyday walks and short hut trips",
                "lightly loaded day hikes",
            ),
            materials=(
                "Its 210D recycled nylon body is coated on the inside and reinforced with a 420D "
                "base.",
                "The body is made from abrasion-resistant 300D polyester with a PU coating.",
            ),
            features=(
                "A ventilated mesh back panel keeps your back drier on warm climbs.",
                "A hydration sleeve and hose port hold a reservoir of up to 2 litres.",
                "Side stretch pockets take a 1-litre bottle each.",
                "An integrated rain cover stows in a zipped pocket at the base.",
                "A padded laptop sleeve makes it just as useful on the commute.",
            ),
            tags=("daypack", "hiking"),
            specs=(("volume_l", steps(18, 30, 2)),),
        ),
        Subtype(
            label="{volume_l}-litre hiking backpack",
            kind="hiking backpack",
            noun="{volume_l} Backpack",
            price=(119, 219),
            weight_g=(1050, 1650),
            weight_note=" in size M/L",
            size_sets=(("S/M", "M/L"),),
            adjectives=("comfortable", "well-ventilated", "adaptable"),
            uses=(
                "multi-day hut-to-hut tours",
                "long day hikes with extra layers",
                "weekend hikes with a light overnight kit",
            ),
            materials=(
                "It is built from 420D high-tenacity nylon with a 630D base that shrugs off "
                "granite and scree.",
                "A recycled 210D ripstop body with a PU coating keeps its weight down while "
                "handling rough use.",
            ),
            features=(
                "A tensioned mesh back panel leaves a gap for air to circulate.",
                "The lid converts into a small hip pack for side trips from camp.",
                "A front stretch pocket swallows a wet rain jacket.",
                "Hip-belt pockets keep snacks and a phone within reach.",
                "An adjustable back system fits a wide range of torso lengths.",
            ),
            tags=("hiking", "trekking"),
            specs=(("volume_l", steps(32, 44, 2)),),
        ),
        Subtype(
            label="{volume_l}-litre trekking backpack",
            kind="trekking backpack",
            noun="{volume_l} Trekking Pack",
            price=(189, 359),
            weight_g=(1800, 2600),
            weight_note=" in size M/L",
            size_sets=(("S/M", "M/L"),),
            adjectives=("load-hauling", "supportive", "heavy-duty"),
            uses=(
                "week-long treks carrying tent and stove",
                "expeditions with heavy loads",
                "long-distance trails where resupply is rare",
            ),
            materials=(
                "A 500D nylon body and an aluminium perimeter frame carry loads of up to 25 kg "
                "comfortably.",
                "A tough 420D nylon body sits on an HDPE frame sheet with an aluminium stay that "
                "transfers weight to the hips.",
            ),
            features=(
                "A separate sleeping bag compartment opens from the front with a zipped divider.",
                "A front U-zip opens the main compartment without unpacking from the top.",
                "The hip belt pivots with your stride, which steadies heavy loads on uneven "
                "ground.",
                "An integrated rain cover stows in a zipped pocket at the base.",
                "Load lifters and a sliding sternum strap fine-tune the carry.",
            ),
            tags=("trekking", "expedition"),
            specs=(("volume_l", steps(55, 75, 5)),),
        ),
        Subtype(
            label="{volume_l}-litre ultralight backpack",
            kind="ultralight backpack",
            noun="{volume_l} UL Pack",
            price=(169, 299),
            weight_g=(620, 980),
            weight_note=" in size M/L",
            size_sets=(("S/M", "M/L"),),
            adjectives=("frameless", "stripped-back", "weatherproof"),
            uses=(
                "thru-hikes with a base weight under five kilos",
                "fast-and-light hut tours",
                "long-distance trails",
            ),
            materials=(
                "Its body is a laminated ripstop with a waterproof film, and the seams are taped "
                "to keep gear dry.",
                "A 200D ultra-high-molecular-weight polyethylene ripstop keeps the weight low and "
                "the fabric hard to tear.",
            ),
            features=(
                "A removable foam back pad doubles as a sit pad at breaks.",
                "The roll-top closure adjusts the volume and keeps the rain out.",
                "Large mesh side pockets can be reached without taking the pack off.",
                "Shoulder strap pockets hold a soft flask and a phone.",
            ),
            tags=("ultralight", "thru-hiking"),
            specs=(("volume_l", steps(38, 50, 2)),),
            lines=("", "Pro", "Trail"),
        ),
        Subtype(
            label="{volume_l}-litre alpine climbing pack",
            kind="alpine climbing pack",
            noun="{volume_l} Alpine Pack",
            price=(129, 249),
            weight_g=(780, 1300),
            size_sets=(("S/M", "M/L"), ("One size",)),
            adjectives=("streamlined", "tough", "minimal"),
            uses=(
                "alpine routes and glacier tours",
                "ski mountaineering and ice climbing",
                "multi-pitch climbs with a long approach",
            ),
            materials=(
                "A 630D nylon body with a reinforced base resists crampon points and rough rock.",
                "Its double-layer nylon base and welded seams keep snow and abrasion on the "
                "outside.",
            ),
            features=(
                "Two ice axe attachments and a rope strap under the lid carry technical gear "
                "outside.",
                "The hip belt can be removed so it does not interfere with a harness.",
                "A slim profile keeps your arms free and your head clear when you look up.",
                "Gear loops on the hip belt hold ice screws on the approach.",
            ),
            tags=("alpine", "climbing", "mountaineering"),
            specs=(("volume_l", steps(28, 44, 2)),),
        ),
        Subtype(
            label="{volume_l}-litre trail running vest",
            kind="trail running vest",
            noun="{volume_l} Running Vest",
            price=(89, 169),
            weight_g=(180, 320),
            weight_note=" in size M",
            size_sets=(("S", "M", "L"), ("XS", "S", "M", "L")),
            adjectives=("snug-fitting", "lightweight", "bounce-free"),
            uses=("ultra-trail races", "long mountain runs", "fast hikes and skyrunning"),
            materials=(
                "Its stretch mesh body wraps around your torso, so it barely moves on fast "
                "descents.",
                "A breathable spacer mesh and a lightweight ripstop back panel keep weight and "
                "heat down.",
            ),
            features=(
                "Two 500 ml soft flasks ride in the front pockets.",
                "Pole holders let you stow trekking poles without stopping.",
                "A whistle on the sternum strap and an emergency blanket pocket cover typical "
                "race kit rules.",
                "Zipped front pockets keep keys and gels secure.",
            ),
            tags=("trail-running", "hydration"),
            specs=(("volume_l", steps(5, 12)),),
        ),
    ),
)

HIKING_BOOTS = Category(
    slug="hiking-boots",
    prefix="BOT",
    share=11,
    brands=("Bergfalke", "Nordkamm", "Granite Hollow", "Kestrel Ridge"),
    models=words(
        "Karst Scharte Grat Talus Felsen Ridgeway Sentinel Kamm Alder Brunnen Hornli Gams"
    ),
    lines=("", "WP", "Pro", "Trek"),
    colors=("Brown", "Anthracite", "Olive", "Navy", "Grey/Orange", "Sand"),
    closings=(
        "Give them a few short walks to break them in before a long trip.",
        "Clean off mud after each hike and re-proof the upper now and then to keep it "
        "water-repellent.",
        "Our sizing guide has the full EU, UK and US conversion chart.",
        "Worn-out soles can be replaced through our resoling service.",
        "Try them on in the afternoon, when your feet are at their largest.",
    ),
    subtypes=(
        Subtype(
            label="mid-cut hiking boot",
            noun="Mid Hiking Boot",
            price=(149, 259),
            weight_g=(1050, 1400),
            sizing="footwear",
            adjectives=("supportive", "waterproof", "comfortable"),
            uses=(
                "day hikes and hut tours",
                "mixed terrain from forest paths to rocky trails",
                "multi-day treks with a light pack",
            ),
            materials=(
                "The upper combines 1.8 mm nubuck leather with abrasion-resistant textile and a "
                "waterproof, breathable membrane.",
                "A suede and mesh upper sits over a waterproof membrane, with a rubber toe cap "
                "to fend off rocks.",
                "Its full-grain leather upper is lined with a waterproof membrane and treated "
                "with a water-repellent finish.",
            ),
            features=(
                "The rubber outsole has {lug_mm} mm lugs in a self-cleaning pattern for mud and "
                "loose gravel.",
                "A dual-density EVA midsole cushions long days without feeling vague on rocky "
                "ground.",
                "Locking hooks at the ankle hold the heel in place on steep descents.",
                "A TPU shank under the arch adds torsional stability on uneven paths.",
                "A padded collar and tongue keep the ankle comfortable on long days.",
            ),
            tags=("waterproof", "hiking"),
            specs=(("lug_mm", (4, 5)),),
        ),
        Subtype(
            label="trekking boot",
            noun="Trekking Boot",
            price=(229, 329),
            weight_g=(1500, 1900),
            sizing="footwear",
            adjectives=("rugged", "stiff-soled", "supportive"),
            uses=(
                "multi-day treks with a heavy pack",
                "alpine trails and scrambles",
                "off-trail routes over scree and snowfields",
            ),
            materials=(
                "A 2.6 mm full-grain leather upper with a waterproof membrane and a full rubber "
                "rand protects against scree.",
                "Its one-piece leather upper keeps the seam count low, and a waterproof lining "
                "keeps feet dry through bogs and snowfields.",
            ),
            features=(
                "A stiff nylon midsole plate and a heel welt make it compatible with C1 strap-on "
                "crampons.",
                "The deep-lugged rubber outsole ({lug_mm} mm lugs) grips on wet rock and holds "
                "an edge on traverses.",
                "A high, padded ankle cuff supports heavy loads over rough ground.",
                "Lacing that runs to the toe allows a precise fit for technical sections.",
            ),
            tags=("waterproof", "trekking", "crampon-compatible"),
            specs=(("lug_mm", (5, 6)),),
            lines=("", "Pro", "Alpine", "WP"),
        ),
        Subtype(
            label="low-cut hiking shoe",
            noun="Hiking Shoe",
            price=(119, 179),
            weight_g=(780, 980),
            sizing="footwear",
            adjectives=("light", "nimble", "breathable"),
            uses=(
                "day hikes on well-made paths",
                "travel and city-to-trail days",
                "summer hut tours",
            ),
            materials=(
                "A breathable mesh upper with synthetic overlays dries quickly after stream "
                "crossings.",
                "The suede and mesh upper has a fast-drying lining and a protective rubber toe "
                "cap.",
            ),
            features=(
                "A flexible EVA midsole makes it comfortable from the first wear.",
                "The sticky rubber outsole has {lug_mm} mm lugs that grip on wet roots and rock.",
                "A protective toe bumper takes the knocks on rocky paths.",
                "A heel pull loop and quick laces make it easy to get on and off at the hut.",
            ),
            tags=("hiking", "low-cut"),
            specs=(("lug_mm", (3, 4, 5)),),
            lines=("", "Lite", "Air", "Trail"),
        ),
        Subtype(
            label="approach shoe",
            noun="Approach Shoe",
            price=(129, 189),
            weight_g=(760, 920),
            sizing="footwear",
            adjectives=("grippy", "precise", "durable"),
            uses=(
                "approaches to climbing crags",
                "via ferrata and scrambles",
                "rocky alpine paths",
            ),
            materials=(
                "A suede leather upper with a wraparound rubber rand stands up to abrasive "
                "granite.",
                "Its synthetic upper and full rubber rand protect the foot on scrambles and rough "
                "approaches.",
            ),
            features=(
                "A sticky climbing-rubber outsole with a flat climbing zone at the toe grips on "
                "slabs.",
                "Lacing runs to the toe for a precise fit on technical ground.",
                "A clip loop at the heel lets you hang the shoes from a harness on multi-pitch "
                "routes.",
                "The low-profile midsole keeps you close to the rock for better feel.",
            ),
            tags=("approach", "climbing", "scrambling"),
            lines=("", "Pro", "Rock", "Lite"),
        ),
        Subtype(
            label="mountaineering boot",
            noun="Mountaineering Boot",
            price=(329, 449),
            weight_g=(1750, 2100),
            sizing="footwear",
            adjectives=("insulated", "stiff-soled", "glacier-ready"),
            uses=(
                "glacier tours and alpine peaks up to 4,000 m",
                "winter mountaineering",
                "via ferrata in snow and ice",
            ),
            materials=(
                "A silicone-impregnated 3 mm leather upper with an insulated waterproof lining "
                "keeps feet warm and dry on glaciers.",
                "Its synthetic upper with an integrated gaiter and a waterproof membrane seals "
                "out snow.",
            ),
            features=(
                "A rigid midsole with heel and toe welts accepts semi-automatic (C2) crampons.",
                "A thermal insole and insulated lining keep feet warm on early alpine starts.",
                "Deep {lug_mm} mm lugs and a braking zone at the heel help on steep, snowy "
                "descents.",
                "A fully rubberised rand protects against crampon and rock damage.",
            ),
            tags=("mountaineering", "crampon-compatible", "winter"),
            specs=(("lug_mm", (5, 6)),),
            lines=("", "Pro", "Alpine", "XT"),
        ),
    ),
)

JACKETS = Category(
    slug="jackets",
    prefix="JKT",
    share=13,
    brands=("Nordkamm", "Tundra Pike", "Larchmere", "Cinderfell", "Kestrel Ridge"),
    models=words("Gale Vesper Squall Brae Harrow Fell Stratus Nimbus Cirrus Kettle Isbre Lee"),
    lines=("", "Pro", "Lite", "Hoody"),
    colors=("Black", "Red", "Petrol", "Lime", "Navy", "Graphite", "Mustard"),
    closings=(
        "Wash it now and then with a technical detergent to keep the fabric performing.",
        "Check our sizing guide for chest measurements before you order.",
        "The regular fit leaves room for a base layer and a light mid-layer.",
        "Hang it to dry away from direct heat after a wet day out.",
    ),
    subtypes=(
        Subtype(
            label="three-layer hardshell jacket",
            noun="Hardshell Jacket",
            price=(229, 499),
            weight_g=(340, 520),
            sizing="apparel",
            adjectives=("waterproof", "storm-proof", "technical"),
            uses=(
                "alpine climbing and ski touring",
                "hiking in persistent rain",
                "mountaineering in all seasons",
            ),
            materials=(
                "A three-layer shell fabric with a {waterproof_mm:,} mm waterproof rating and "
                "high breathability handles hours of climbing in rain.",
                "Its 40D nylon face, waterproof-breathable membrane and knitted backer are rated "
                "to a {waterproof_mm:,} mm water column.",
            ),
            features=(
                "A helmet-compatible hood adjusts at three points and keeps its shape in wind.",
                "Pit zips dump heat quickly on steep climbs.",
                "Two chest pockets sit above the hip belt and harness line.",
                "Fully taped seams and water-resistant zips keep the weather out.",
                "The cut is long enough at the back to stay put when you reach overhead.",
            ),
            tags=("waterproof", "hardshell"),
            specs=(("waterproof_mm", steps(20000, 28000, 2000)),),
        ),
        Subtype(
            label="2.5-layer rain jacket",
            noun="Rain Jacket",
            price=(89, 179),
            weight_g=(220, 360),
            sizing="apparel",
            adjectives=("packable", "lightweight", "no-fuss"),
            uses=(
                "summer hiking and travel",
                "cycling and city commutes",
                "hikes when showers are forecast",
            ),
            materials=(
                "Its 2.5-layer nylon shell is rated to {waterproof_mm:,} mm and uses a PFC-free "
                "water-repellent finish.",
                "A recycled polyester face fabric with a printed inner layer keeps it waterproof "
                "to {waterproof_mm:,} mm while feeling dry against skin.",
            ),
            features=(
                "It packs into its own chest pocket and clips to a harness or belt.",
                "An adjustable hood with a laminated brim keeps rain off your face.",
                "Elasticated cuffs and a drawcord hem seal out wind.",
                "Taped seams keep it waterproof during long downpours.",
            ),
            tags=("waterproof", "packable"),
            specs=(("waterproof_mm", steps(10000, 20000, 2000)),),
        ),
        Subtype(
            label="down jacket",
            noun="Down Jacket",
            price=(179, 379),
            weight_g=(280, 520),
            sizing="apparel",
            adjectives=("warm", "packable", "lightweight"),
            uses=(
                "cold belays and camp evenings",
                "winter walks and ski holidays",
                "cold mornings on the trail",
            ),
            materials=(
                "It is insulated with {fill_power} fill power responsibly sourced down in a 20D "
                "nylon shell.",
                "Stitch-through baffles filled with {fill_power}-cuin down pack a lot of warmth "
                "into a compressible jacket.",
            ),
            features=(
                "It stuffs into its own hand pocket for storage in the pack.",
                "Synthetic insulation at the shoulders and cuffs keeps working where down would "
                "get wet.",
                "An insulated hood fits under a climbing helmet.",
                "A water-repellent shell fabric shrugs off light snow and drizzle.",
            ),
            tags=("down", "insulated"),
            specs=(("fill_power", steps(650, 850, 50)),),
        ),
        Subtype(
            label="synthetic insulated jacket",
            noun="Insulated Jacket",
            price=(139, 259),
            weight_g=(340, 560),
            sizing="apparel",
            adjectives=("versatile", "warm", "breathable"),
            uses=(
                "ski touring and winter hiking",
                "damp shoulder-season trips",
                "belay duty at the crag",
            ),
            materials=(
                "Its 80 g/m² synthetic insulation keeps you warm even after a soaking and dries "
                "fast.",
                "A windproof 20D nylon shell over continuous-filament synthetic insulation "
                "balances warmth and breathability.",
            ),
            features=(
                "It works as a warm mid-layer under a hardshell or on its own on dry days.",
                "A stretch hood and cuffs move with you when climbing.",
                "Two zipped hand pockets sit high enough to use with a hip belt.",
                "Because it handles moisture well, it suits high-output days like ski touring.",
            ),
            tags=("synthetic", "insulated"),
        ),
        Subtype(
            label="softshell jacket",
            noun="Softshell Jacket",
            price=(119, 229),
            weight_g=(380, 560),
            sizing="apparel",
            adjectives=("stretchy", "windproof", "breathable"),
            uses=(
                "ski touring and fast hikes",
                "climbing on cool days",
                "high-output winter activities",
            ),
            materials=(
                "A four-way stretch softshell fabric blocks wind and sheds light showers with a "
                "water-repellent finish.",
                "Its double-weave polyamide and elastane fabric resists abrasion from rock and "
                "pack straps.",
            ),
            features=(
                "A brushed inner face feels warm against base layers.",
                "An adjustable hood and a chin guard cover you when the wind picks up.",
                "Articulated sleeves let you reach for high holds without the hem riding up.",
                "Two handwarmer pockets and a chest pocket carry small items.",
            ),
            tags=("softshell", "windproof"),
        ),
        Subtype(
            label="fleece jacket",
            noun="Fleece Jacket",
            price=(69, 139),
            weight_g=(300, 480),
            sizing="apparel",
            adjectives=("cosy", "breathable", "warm"),
            uses=(
                "everyday layering on the trail",
                "cool evenings at camp",
                "autumn hikes",
            ),
            materials=(
                "It is made from a 200 g/m² recycled polyester fleece that stays warm when damp.",
                "A grid fleece backer traps warm air while letting moisture escape.",
            ),
            features=(
                "A full-length zip makes it easy to regulate temperature.",
                "Flat seams let it layer comfortably under a shell jacket.",
                "Thumb loops keep the sleeves in place under gloves.",
                "Zipped hand pockets are lined with soft fleece.",
            ),
            tags=("fleece", "midlayer"),
        ),
        Subtype(
            label="expedition down parka",
            noun="Down Parka",
            price=(449, 599),
            weight_g=(850, 1150),
            sizing="apparel",
            adjectives=("windproof", "very warm", "hooded"),
            uses=(
                "high-altitude expeditions",
                "polar trips and winter camping",
                "the coldest belays and summit days",
            ),
            materials=(
                "It carries a heavy fill of {fill_power} fill power goose down in box-wall "
                "baffles.",
                "A windproof ripstop shell surrounds {fill_power}-cuin goose down, so no heat "
                "escapes through stitch lines.",
            ),
            features=(
                "A large insulated hood with an adjustable brim shields your face in gale-force "
                "winds.",
                "Internal mesh pockets keep gloves and water bottles from freezing.",
                "A two-way main zip lets you clip into a harness without opening the whole front.",
                "The hem reaches below the hips for extra warmth when sitting at camp.",
            ),
            tags=("down", "expedition", "winter"),
            specs=(("fill_power", (800, 850, 900)),),
            lines=("", "Pro", "Polar", "XT"),
        ),
    ),
)

TRAIL_RUNNING_SHOES = Category(
    slug="trail-running-shoes",
    prefix="TRS",
    share=9,
    brands=("Kestrel Ridge", "Quillpeak", "Cinderfell", "Granite Hollow"),
    models=words("Skua Merlin Tern Wren Dart Scurry Fleet Harrier Pika Chamois Ibex Stoat"),
    lines=("", "Pro", "Ultra", "Race"),
    colors=("Black/Lime", "Blue/Orange", "Grey", "Coral", "Teal", "White/Red"),
    closings=(
        "Most runners take their usual road-shoe size; see our sizing guide if you are between "
        "sizes.",
        "Rinse off mud after each run and let them air-dry away from heaters.",
        "Rotate two pairs if you run daily to give the midsole time to recover.",
        "The removable insole can be swapped for your own orthotics.",
    ),
    subtypes=(
        Subtype(
            label="cushioned trail running shoe",
            noun="Trail Running Shoe",
            price=(129, 179),
            weight_g=(560, 680),
            sizing="footwear",
            adjectives=("plush", "comfortable", "protective"),
            uses=(
                "ultra distances and long training runs",
                "mixed trails and forest paths",
                "long days on technical trails",
            ),
            materials=(
                "A breathable engineered mesh upper with welded overlays keeps the foot secure "
                "without hot spots.",
                "Its recycled mesh upper and supercritical foam midsole deliver soft cushioning "
                "for long distances.",
            ),
            features=(
                "The {stack_mm} mm stack and {drop_mm} mm drop give plenty of cushioning on long "
                "descents.",
                "Its {lug_mm} mm lugs grip dirt, gravel and wet rock.",
                "A rock plate in the forefoot protects against sharp stones.",
                "A gusseted tongue keeps trail debris out.",
            ),
            tags=("trail-running", "cushioned"),
            specs=(
                ("stack_mm", steps(30, 38, 2)),
                ("drop_mm", (4, 6, 8, 10)),
                ("lug_mm", (3, 4, 5)),
            ),
        ),
        Subtype(
            label="trail racing shoe",
            kind="lightweight trail racing shoe",
            noun="Trail Racing Shoe",
            price=(119, 169),
            weight_g=(440, 540),
            sizing="footwear",
            adjectives=("fast", "featherweight", "nimble"),
            uses=(
                "trail races and fast training sessions",
                "skyrunning and vertical kilometre races",
                "short, fast mountain runs",
            ),
            materials=(
                "A thin, single-layer mesh upper drains quickly and hugs the foot on fast corners.",
                "Its minimal upper and responsive foam midsole keep weight down for race day.",
            ),
            features=(
                "The {stack_mm} mm stack and {drop_mm} mm drop keep you close to the ground for "
                "agility.",
                "Its {lug_mm} mm lugs bite into soft ground without feeling clumsy on hard paths.",
                "A speed-lacing system tightens with one pull.",
                "A low-profile heel counter saves weight without losing stability.",
            ),
            tags=("trail-running", "racing", "lightweight"),
            specs=(
                ("stack_mm", steps(22, 28, 2)),
                ("drop_mm", (0, 4, 6)),
                ("lug_mm", (4, 5)),
            ),
            lines=("", "Pro", "SL", "Elite"),
        ),
        Subtype(
            label="waterproof trail running shoe",
            noun="Waterproof Trail Shoe",
            price=(139, 189),
            weight_g=(620, 740),
            sizing="footwear",
            adjectives=("winter-ready", "grippy", "rugged"),
            uses=(
                "winter running and wet trails",
                "muddy cross-country routes",
                "autumn and winter trail runs",
            ),
            materials=(
                "A waterproof, breathable membrane sits inside a tough ripstop upper for wet and "
                "wintry trails.",
                "Its membrane-lined upper and snug ankle collar keep water and slush out.",
            ),
            features=(
                "The {stack_mm} mm stack with {drop_mm} mm of drop keeps the ride stable on "
                "slippery ground.",
                "Its {lug_mm} mm multi-directional lugs hold on mud, wet leaves and light snow.",
                "Reflective details keep you visible on dark winter runs.",
                "A built-in gaiter ring lets you attach gaiters for snowy conditions.",
            ),
            tags=("trail-running", "waterproof", "winter"),
            specs=(
                ("stack_mm", steps(28, 34, 2)),
                ("drop_mm", (6, 8, 10)),
                ("lug_mm", (4, 5, 6)),
            ),
        ),
        Subtype(
            label="mountain running shoe",
            noun="Mountain Running Shoe",
            price=(129, 169),
            weight_g=(520, 620),
            sizing="footwear",
            adjectives=("precise", "grippy", "agile"),
            uses=(
                "steep mountain races",
                "technical ridge runs",
                "soft, muddy ground and fell running",
            ),
            materials=(
                "A durable, abrasion-resistant upper with a rubberised toe cap stands up to scree "
                "and rocky ridges.",
                "Its close-fitting upper and firm midsole give precise footing on steep, "
                "technical ground.",
            ),
            features=(
                "Aggressive {lug_mm} mm lugs bite into soft ground and steep grass.",
                "The {stack_mm} mm stack and {drop_mm} mm drop keep the foot close to the terrain.",
                "A sticky rubber compound grips wet rock on ridge runs.",
                "A narrow, precise fit keeps the foot locked in on side slopes.",
            ),
            tags=("trail-running", "mountain", "technical"),
            specs=(
                ("stack_mm", steps(22, 30, 2)),
                ("drop_mm", (4, 6, 8)),
                ("lug_mm", (5, 6)),
            ),
        ),
    ),
)

CLIMBING = Category(
    slug="climbing",
    prefix="CLM",
    share=11,
    brands=("Bergfalke", "Granite Hollow", "Cragsmith", "Quillpeak"),
    models=words("Crux Dyno Gaston Smear Mantle Flake Sloper Campus Redpoint Onsight Beta Pinch"),
    lines=("", "Pro", "Lite", "Sport", "Alpine"),
    colors=("Blue", "Orange", "Green", "Black", "Yellow", "Purple"),
    closings=(
        "Inspect it before every use and retire it after a severe fall or visible damage.",
        "Climbing equipment should only be used by people trained in its safe use.",
        "Store it dry, out of direct sunlight and away from chemicals.",
        "Our returns policy explains how we handle returns of safety equipment.",
    ),
    subtypes=(
        Subtype(
            label="sport climbing harness",
            noun="Harness",
            price=(59, 119),
            weight_g=(290, 420),
            weight_note=" in size M",
            size_sets=(("XS", "S", "M", "L", "XL"), ("S", "M", "L", "XL"), ("XS", "S", "M", "L")),
            adjectives=("comfortable", "lightweight", "all-round"),
            uses=(
                "sport climbing and gym sessions",
                "multi-pitch routes and alpine rock",
                "long days at the crag",
            ),
            materials=(
                "Split-webbing waist and leg loops spread the load, so hanging at the anchor "
                "stays comfortable.",
                "Its laminated waist belt uses a thin foam core and an abrasion-resistant cover.",
            ),
            features=(
                "It has {gear_loops} gear loops, enough for a full rack of quickdraws.",
                "Adjustable leg loops fit over winter layers for ice and alpine climbing.",
                "A colour-coded wear indicator on the belay loop shows when to retire it.",
                "It is certified to EN 12277 and UIAA 105.",
            ),
            tags=("harness", "sport-climbing", "certified"),
            specs=(("gear_loops", (4, 5)),),
        ),
        Subtype(
            label="{diameter_mm} mm dynamic single rope",
            kind="dynamic rope",
            noun="{diameter_mm} Dynamic Rope",
            price=(139, 289),
            weight_g=(3400, 4100),
            weight_note=" for the 60 m length",
            size_sets=(
                ("60 m",),
                ("60 m", "70 m"),
                ("50 m", "60 m", "70 m"),
                ("60 m", "70 m", "80 m"),
            ),
            adjectives=("durable", "supple", "all-round"),
            uses=(
                "sport climbing and multi-pitch routes",
                "gym and outdoor cragging",
                "alpine rock and ice routes",
            ),
            materials=(
                "A dense, tightly braided sheath improves abrasion resistance on rough rock.",
                "A dry treatment on both core and sheath keeps it light and supple on wet or icy "
                "routes.",
            ),
            features=(
                "It holds {falls} UIAA standard falls.",
                "A bicolour pattern marks the middle of the rope.",
                "It is certified to EN 892 and UIAA 101.",
                "Each end is heat-sealed and labelled with length and diameter.",
            ),
            tags=("rope", "dynamic", "certified"),
            specs=(("diameter_mm", (8.9, 9.2, 9.5, 9.8, 10.2)), ("falls", (6, 7, 8, 9))),
        ),
        Subtype(
            label="quickdraw set",
            noun="Quickdraw Set",
            price=(69, 149),
            weight_g=(480, 660),
            weight_note=" for the 6-pack",
            size_sets=(("6-pack",), ("6-pack", "12-pack")),
            adjectives=("lightweight", "easy-clipping", "reliable"),
            uses=("sport climbing", "bolted multi-pitch routes", "indoor lead climbing"),
            materials=(
                "Each draw pairs a straight-gate and a bent-gate carabiner with a 12 cm polyamide "
                "sling.",
                "Wire-gate carabiners on an 11 cm high-strength polyethylene sling keep each "
                "quickdraw light and snag-free.",
            ),
            features=(
                "Keylock noses make clipping and unclipping smooth on hard moves.",
                "A rubber keeper holds the rope-end carabiner in the right position.",
                "The carabiners are rated to {gate_open_kn} kN with the gate open.",
                "It is certified to EN 12275 and UIAA 121.",
            ),
            tags=("quickdraws", "sport-climbing", "certified"),
            specs=(("gate_open_kn", (8, 9, 10)),),
        ),
        Subtype(
            label="climbing shoe",
            noun="Climbing Shoe",
            price=(89, 179),
            weight_g=(420, 560),
            sizing="unisex-footwear",
            adjectives=("precise", "sensitive", "comfortable"),
            uses=(
                "bouldering and steep sport routes",
                "gym sessions and all-day cragging",
                "multi-pitch climbs",
            ),
            materials=(
                "A synthetic upper that barely stretches keeps the fit consistent session after "
                "session.",
                "Its unlined leather upper moulds to the foot over the first few sessions.",
            ),
            features=(
                "A moderate downturn and an asymmetric toe focus power for overhangs.",
                "A flat last and a padded tongue keep it comfortable for long multi-pitch days.",
                "Its {rubber_mm} mm sticky rubber sole balances sensitivity and durability.",
                "A hook-and-loop closure makes it quick to slip on and off between climbs.",
            ),
            tags=("climbing-shoes", "bouldering"),
            specs=(("rubber_mm", (3.5, 4.0, 4.2, 4.5)),),
        ),
        Subtype(
            label="climbing helmet",
            noun="Helmet",
            price=(59, 129),
            weight_g=(210, 360),
            size_sets=(("S/M", "M/L"), ("One size",)),
            adjectives=("lightweight", "well-ventilated", "robust"),
            uses=("alpine routes with loose rock", "sport climbing", "via ferrata and scrambles"),
            materials=(
                "A hard ABS shell bonded to an EPS foam liner shrugs off rockfall at the crag.",
                "Its in-mould construction with an EPS and EPP foam core keeps the weight down.",
            ),
            features=(
                "Clips for a headlamp hold it securely for early starts.",
                "Large vents keep your head cool on hot approaches.",
                "A one-hand adjustment wheel dials in the fit in seconds.",
                "It is certified to EN 12492 and UIAA 106.",
            ),
            tags=("helmet", "certified", "alpine"),
        ),
        Subtype(
            label="belay device",
            noun="Belay Device",
            price=(24, 109),
            weight_g=(75, 210),
            adjectives=("compact", "smooth", "versatile"),
            uses=("sport climbing and top-roping", "multi-pitch climbing", "gym sessions"),
            materials=(
                "It is machined from hard-anodised aluminium for long life under rope friction.",
                "A stainless steel wear plate protects the friction zone from rope grooves.",
            ),
            features=(
                "An assisted-braking design adds security when catching falls.",
                "A guide mode lets you belay a second directly from the anchor.",
                "It accepts single ropes from 8.5 to 11 mm.",
                "Grooved friction channels give a smooth, controlled lower.",
            ),
            tags=("belay", "certified"),
        ),
        Subtype(
            label="chalk bag",
            noun="Chalk Bag",
            price=(14, 34),
            weight_g=(70, 140),
            adjectives=("practical", "roomy", "compact"),
            uses=("bouldering sessions", "sport climbing", "long multi-pitch days"),
            materials=(
                "Its cotton-canvas body is lined with fleece to spread chalk evenly over your "
                "fingers.",
                "A stiffened rim keeps the opening wide so you can chalk up quickly.",
            ),
            features=(
                "A brush holder keeps a boar-hair brush at hand for cleaning holds.",
                "A drawstring closure stops chalk spilling in your pack.",
                "A zipped pocket holds keys or a roll of tape.",
            ),
            tags=("chalk", "bouldering"),
            closings=(
                "Chalk is sold separately.",
                "Shake it out and wash it by hand when the lining gets clogged.",
            ),
        ),
    ),
)

COOKING = Category(
    slug="cooking",
    prefix="STV",
    share=9,
    brands=("Emberwick", "Fjellvik", "Tundra Pike", "Cinderfell"),
    models=words("Flint Tinder Spark Hearthstone Kettle Brazier Coal Sear Simmer Bivouac Glow Ash"),
    lines=("", "Ti", "Pro", "Mini", "Duo"),
    colors=("Silver", "Black", "Orange", "Titanium Grey"),
    closings=(
        "Never cook inside a closed tent, because carbon monoxide builds up quickly.",
        "It packs into the included mesh stuff sack.",
        "Check seals and connections before each trip.",
        "Gas canisters are sold separately and ship by ground within Germany only.",
    ),
    subtypes=(
        Subtype(
            label="canister stove",
            noun="Canister Stove",
            price=(34, 89),
            weight_g=(70, 140),
            adjectives=("compact", "featherweight", "reliable"),
            uses=(
                "backpacking and bikepacking trips",
                "quick brews on day hikes",
                "solo and duo trekking",
            ),
            materials=(
                "Its burner head and pot supports are made from stainless steel and "
                "hard-anodised aluminium.",
                "A titanium burner and folding pot supports keep it tiny and light.",
            ),
            features=(
                "It boils a litre of water in about {boil_time_s} seconds in still air.",
                "A piezo igniter lights it without matches.",
                "Output peaks at {output_w:,} W, while a wide control valve allows a gentle "
                "simmer.",
                "It screws onto standard EN 417 threaded gas canisters.",
                "Folding pot supports hold pans up to 20 cm wide.",
            ),
            tags=("stove", "gas"),
            specs=(("output_w", steps(2400, 3200, 200)), ("boil_time_s", steps(180, 270, 15))),
        ),
        Subtype(
            label="integrated stove system",
            noun="Stove System",
            price=(119, 189),
            weight_g=(380, 560),
            size_sets=(("1 L",), ("0.8 L", "1 L"), ("1 L", "1.8 L")),
            adjectives=("efficient", "wind-resistant", "all-in-one"),
            uses=("fast-and-light alpine trips", "melting snow in winter", "solo backpacking"),
            materials=(
                "A heat-exchanger pot with an insulated cosy locks onto the burner for efficient, "
                "wind-resistant cooking.",
                "Its hard-anodised aluminium pot has a built-in heat exchanger that saves fuel in "
                "the cold.",
            ),
            features=(
                "It boils a litre of water in about {boil_time_s} seconds.",
                "The burner and a 100 g gas canister fit inside the pot for packing.",
                "A push-button igniter and a see-through lid make it easy to use.",
                "A regulator keeps output steady as the canister empties and the temperature "
                "drops.",
            ),
            tags=("stove", "gas", "stove-system"),
            specs=(("boil_time_s", steps(120, 180, 15)),),
        ),
        Subtype(
            label="multi-fuel stove",
            noun="Multi-Fuel Stove",
            price=(129, 199),
            weight_g=(300, 420),
            adjectives=("expedition-proven", "rugged", "cold-proof"),
            uses=(
                "expeditions and travel where gas is scarce",
                "winter camping",
                "remote treks",
            ),
            materials=(
                "A stainless steel burner and a brass pump run on white gas, kerosene or diesel.",
                "Its fuel line, pump and burner are built for field maintenance with the "
                "included tool.",
            ),
            features=(
                "It keeps working in deep cold where gas canisters lose pressure.",
                "Output reaches {output_w:,} W for melting snow on expeditions.",
                "A maintenance kit with spare O-rings comes in the box.",
                "Wide, stable pot supports carry large pots for group cooking.",
            ),
            tags=("stove", "multi-fuel", "expedition"),
            specs=(("output_w", steps(2600, 3400, 200)),),
            closings=(
                "A fuel bottle is not included.",
                "Never cook inside a closed tent, because carbon monoxide builds up quickly.",
                "Clean the jet after each trip when burning kerosene or diesel.",
            ),
        ),
        Subtype(
            label="cook set",
            noun="Cook Set",
            price=(39, 109),
            weight_g=(180, 640),
            size_sets=(("1.1 L",), ("1.6 L",), ("1.1 L", "1.9 L")),
            adjectives=("nesting", "lightweight", "durable"),
            uses=("two-person backpacking trips", "group camping", "canoe and bike tours"),
            materials=(
                "The pots are hard-anodised aluminium with a non-stick ceramic coating.",
                "Made from 0.4 mm titanium, the pots are strong, light and free of coatings.",
            ),
            features=(
                "Folding handles lock in place and stay cool to the touch.",
                "Lids have strainer holes for draining pasta.",
                "A small gas canister and a stove fit inside the pot for transport.",
                "Measurement marks on the inside help with dehydrated meals.",
            ),
            tags=("cookware",),
            closings=(
                "Wash it with warm water and a soft sponge after each trip.",
                "It packs into the included mesh stuff sack.",
            ),
        ),
        Subtype(
            label="titanium mug",
            noun="Titanium Mug",
            price=(24, 44),
            weight_g=(60, 110),
            size_sets=(("450 ml",), ("450 ml", "750 ml"), ("750 ml",)),
            adjectives=("featherweight", "tough", "simple"),
            uses=("morning coffee at camp", "solo trips with a minimal kit", "hut tours"),
            materials=(
                "It is made from grade 1 titanium that will not taint the taste of coffee.",
                "Its thin-walled titanium body is light enough to forget in the pack.",
            ),
            features=(
                "Folding handles tuck flat against the body.",
                "Volume marks in millilitres help when rehydrating meals.",
                "A snug silicone lid reduces spills and heat loss.",
            ),
            tags=("mug", "titanium"),
            lines=("", "Solo", "Duo"),
            closings=(
                "It is dishwasher safe.",
                "A canister stove of the same brand nests inside the larger size.",
            ),
        ),
        Subtype(
            label="gas canister",
            noun="Gas Canister",
            price=(4.95, 13.95),
            weight_g=(190, 200),
            weight_note=" for the 100 g canister",
            size_sets=(("100 g",), ("100 g", "230 g"), ("100 g", "230 g", "450 g")),
            adjectives=("reliable", "high-performance", "cold-weather"),
            uses=(
                "backpacking stoves and stove systems",
                "camp cooking from spring to autumn",
                "cool mornings at altitude",
            ),
            materials=(
                "It contains a butane, isobutane and propane mix that keeps pressure up in cool "
                "weather.",
                "Its blend of isobutane and propane burns cleanly down to about -5 °C.",
            ),
            features=(
                "The self-sealing EN 417 valve fits most screw-on stoves.",
                "Float it in water and read the scale on the label to estimate the fuel left.",
                "The recyclable steel canister can be punctured safely once empty.",
            ),
            tags=("gas", "fuel", "ground-shipping-only"),
            lines=("", "Plus", "Winter"),
            closings=(
                "Gas canisters ship by ground within Germany only, as explained in our shipping "
                "policy.",
                "Store it below 50 °C and never leave it in a hot car.",
            ),
        ),
    ),
)

LIGHTING = Category(
    slug="lighting",
    prefix="LGT",
    share=8,
    brands=("Lanternfly", "Emberwick", "Kestrel Ridge", "Nordkamm"),
    models=words("Beacon Glimmer Flare Lumen Lux Halo Vega Sirius Lodestar Polestar Nova Wisp"),
    lines=("", "RC", "Pro", "Core"),
    colors=("Black", "Orange", "Blue", "Grey", "Yellow"),
    closings=(
        "Dim the beam around camp so you do not dazzle others.",
        "Carry a spare power source on multi-day trips.",
        "Check the charge before every night outing.",
        "The lamp body can be rinsed under the tap after muddy trips.",
    ),
    subtypes=(
        Subtype(
            label="rechargeable headlamp",
            noun="Headlamp",
            price=(39, 89),
            weight_g=(70, 110),
            adjectives=("bright", "versatile", "compact"),
            uses=(
                "night hikes and alpine starts",
                "camp chores and hut evenings",
                "winter running and commutes",
            ),
            materials=(
                "A {battery_mah:,} mAh lithium-ion battery charges over USB-C in about three hours.",
                "Its aluminium-backed LED housing and {battery_mah:,} mAh battery sit on a soft, "
                "washable headband.",
            ),
            features=(
                "It puts out up to {lumens} lumens on boost and runs for {burn_time_h} hours on "
                "its low setting.",
                "A red-light mode preserves night vision in camp and at huts.",
                "A lock mode stops it switching on in your pack.",
                "It is rated {ip_rating} against water, so rain and snow are no problem.",
                "Reactive lighting adjusts brightness to what you are looking at, which saves "
                "battery.",
            ),
            tags=("headlamp", "rechargeable", "usb-c"),
            specs=(
                ("lumens", steps(300, 900, 50)),
                ("burn_time_h", steps(20, 120, 10)),
                ("battery_mah", (1200, 1500, 1800, 2400, 3000)),
                ("ip_rating", ("IPX4", "IPX6", "IPX7")),
            ),
        ),
        Subtype(
            label="battery headlamp",
            noun="Mini Headlamp",
            price=(19, 39),
            weight_g=(28, 60),
            adjectives=("ultralight", "simple", "dependable"),
            uses=("emergency kits and day hikes", "camping and festivals", "travel and hut stays"),
            materials=(
                "It runs on three AAA batteries, which you can buy almost anywhere in the world.",
                "A hybrid power system accepts AAA batteries or an optional rechargeable pack.",
            ),
            features=(
                "It gives up to {lumens} lumens and runs up to {burn_time_h} hours on low.",
                "A single button cycles through wide, spot and red modes.",
                "The tilting lamp head points the beam where you need it.",
                "It is rated {ip_rating} for use in rain.",
            ),
            tags=("headlamp", "lightweight", "aaa"),
            specs=(
                ("lumens", steps(150, 400, 50)),
                ("burn_time_h", steps(40, 150, 10)),
                ("ip_rating", ("IPX4", "IPX6")),
            ),
            lines=("", "Lite", "Pro"),
            closings=(
                "Remove the batteries before storing it for long periods.",
                "Carry a spare set of AAA batteries on longer trips.",
            ),
        ),
        Subtype(
            label="running headlamp",
            noun="Running Headlamp",
            price=(69, 129),
            weight_g=(110, 190),
            adjectives=("bounce-free", "powerful", "well-balanced"),
            uses=("night trail running", "winter training runs", "ultra races through the night"),
            materials=(
                "Its battery sits at the back of the head, balancing the lamp so it does not "
                "bounce.",
                "A {battery_mah:,} mAh battery pack can move to a chest strap or jacket pocket on "
                "cold runs.",
            ),
            features=(
                "It throws up to {lumens:,} lumens for fast descents on technical trails.",
                "A rear red light makes you visible to traffic on road sections.",
                "Its moisture-wicking headband stays put when you sweat.",
                "Lockable buttons are easy to use with gloves.",
            ),
            tags=("headlamp", "running", "rechargeable"),
            specs=(("lumens", steps(500, 1200, 100)), ("battery_mah", (1800, 2400, 3000))),
        ),
        Subtype(
            label="camping lantern",
            noun="Lantern",
            price=(24, 69),
            weight_g=(150, 380),
            adjectives=("handy", "dimmable", "bright"),
            uses=(
                "family camping and festivals",
                "hut evenings and power cuts",
                "lighting up the camp kitchen",
            ),
            materials=(
                "A frosted diffuser spreads up to {lumens:,} lumens of warm light evenly over the "
                "table.",
                "Its rubberised body survives drops onto rock, and a built-in hook hangs it from "
                "a tent loft.",
            ),
            features=(
                "A built-in power bank lets you charge a phone from the lantern.",
                "It runs for {burn_time_h} hours on its lowest setting.",
                "It collapses flat for packing.",
                "A warm-white mode avoids the harsh glare of cold LEDs.",
            ),
            tags=("lantern", "camping", "rechargeable"),
            specs=(("lumens", steps(150, 500, 50)), ("burn_time_h", steps(20, 200, 10))),
        ),
    ),
)

WATER_FILTRATION = Category(
    slug="water-filtration",
    prefix="WTR",
    share=8,
    brands=("Highwater Labs", "Clearbrook", "Quillpeak", "Cairnvale"),
    models=words("Spring Rill Brook Beck Fjord Cascade Source Wellspring Runnel Eddy Delta Riffle"),
    lines=("", "Plus", "Pro", "Mini"),
    colors=("Blue", "Clear", "Grey", "Green", "Orange"),
    closings=(
        "In areas with poor sanitation, combine filtration with chemical treatment to cover "
        "viruses.",
        "Once it has been wet, keep it from freezing, because ice can damage the membranes.",
        "Opened filters cannot be returned for hygiene reasons; see our returns policy.",
        "Replacement cartridges are available in our shop.",
    ),
    subtypes=(
        Subtype(
            label="squeeze filter",
            noun="Squeeze Filter",
            price=(29, 49),
            weight_g=(60, 110),
            size_sets=(("0.5 L",), ("1 L",), ("0.5 L", "1 L")),
            adjectives=("featherweight", "simple", "fast-flowing"),
            uses=(
                "thru-hiking and fastpacking",
                "day hikes where streams are plentiful",
                "travel in remote areas",
            ),
            materials=(
                "Hollow-fibre membranes with a {pore_um} micron pore size remove bacteria and "
                "protozoa.",
                "Its hollow-fibre cartridge filters up to {lifetime_l:,} litres before it needs "
                "replacing.",
            ),
            features=(
                "It screws onto standard 28 mm bottle threads as well as the supplied soft pouch.",
                "Backflush it with the included syringe to restore the flow rate.",
                "It can be used inline with a hydration reservoir.",
                "It does not remove viruses, so treat water chemically where sanitation is poor.",
            ),
            tags=("filter", "ultralight"),
            specs=(("pore_um", (0.1, 0.2)), ("lifetime_l", (1500, 2000, 4000, 10000))),
        ),
        Subtype(
            label="pump filter",
            noun="Pump Filter",
            price=(79, 139),
            weight_g=(300, 480),
            adjectives=("robust", "dependable", "field-serviceable"),
            uses=(
                "expeditions to remote areas",
                "canoe trips and lake camps",
                "group treks with unreliable water sources",
            ),
            materials=(
                "A ceramic element with a {pore_um} micron pore size can be scrubbed clean in the "
                "field.",
                "Its glass-fibre cartridge and activated-carbon core improve taste while removing "
                "bacteria and protozoa.",
            ),
            features=(
                "It pumps about {flow_lpm} litres per minute.",
                "A pre-filter on the intake hose keeps silt out of the cartridge.",
                "It draws from shallow puddles and streams where you cannot dip a bottle.",
                "Each cartridge treats up to {lifetime_l:,} litres.",
            ),
            tags=("filter", "pump", "expedition"),
            specs=(
                ("pore_um", (0.2, 0.3)),
                ("flow_lpm", (1.0, 1.2, 1.5, 2.0)),
                ("lifetime_l", (750, 1000, 2000, 50000)),
            ),
        ),
        Subtype(
            label="gravity filter",
            noun="Gravity Filter",
            price=(79, 149),
            weight_g=(280, 420),
            size_sets=(("4 L",), ("6 L",), ("4 L", "6 L"), ("10 L",)),
            adjectives=("hands-free", "group-sized", "convenient"),
            uses=("group camps and base camps", "family camping trips", "canoe and kayak tours"),
            materials=(
                "Its {pore_um} micron hollow-fibre cartridge sits inline between a dirty bag and "
                "a clean reservoir.",
                "A roll-top dirty-water bag made of welded TPU hangs from a branch while gravity "
                "does the work.",
            ),
            features=(
                "It filters around {flow_lpm} litres per minute with no pumping.",
                "It supplies a whole group at camp, so nobody has to queue at the stream.",
                "Quick-disconnect fittings make switching between filtering and storage easy.",
                "Its cartridge lasts up to {lifetime_l:,} litres.",
            ),
            tags=("filter", "gravity", "group"),
            specs=(
                ("pore_um", (0.1, 0.2)),
                ("flow_lpm", (1.0, 1.5, 1.75)),
                ("lifetime_l", (1500, 4000, 10000)),
            ),
        ),
        Subtype(
            label="UV water purifier",
            noun="UV Purifier",
            price=(79, 119),
            weight_g=(120, 160),
            adjectives=("chemical-free", "fast", "travel-ready"),
            uses=(
                "international travel",
                "hut tours and city trips",
                "trekking in regions with doubtful tap water",
            ),
            materials=(
                "UV-C light from a mercury-free LED inactivates bacteria, viruses and protozoa in "
                "{treatment_s} seconds per half litre.",
                "Its rechargeable battery treats about {litres_per_charge} litres per charge.",
            ),
            features=(
                "It does not filter particles, so pre-filter cloudy water first.",
                "A sensor checks that the lamp is submerged before it switches on.",
                "It charges over USB-C, and an LED shows the remaining charge.",
                "It fits bottles and hydration reservoirs with wide openings.",
            ),
            tags=("purifier", "uv", "travel"),
            specs=(("treatment_s", (48, 60, 90)), ("litres_per_charge", steps(30, 60, 10))),
            closings=(
                "Charge it fully before a trip and carry a small power bank for long journeys.",
                "Keep the lamp window clean for full effectiveness.",
            ),
        ),
        Subtype(
            label="filter bottle",
            noun="Filter Bottle",
            price=(34, 59),
            weight_g=(150, 230),
            size_sets=(("0.65 L",), ("1 L",), ("0.65 L", "1 L")),
            adjectives=("convenient", "drink-through", "travel-friendly"),
            uses=("travel and day hikes", "commuting and trail days", "festival weekends"),
            materials=(
                "A soft, BPA-free bottle squeezes water through a {pore_um} micron hollow-fibre "
                "filter.",
                "An activated-carbon stage improves the taste of tap water, while the "
                "{pore_um} micron membrane removes bacteria from streams.",
            ),
            features=(
                "Fill it from any stream and drink straight from the bite valve.",
                "The filter lasts up to {lifetime_l:,} litres.",
                "It rolls up small when empty.",
                "A protective cap keeps the mouthpiece clean in your pack.",
            ),
            tags=("filter", "bottle", "travel"),
            specs=(("pore_um", (0.1, 0.2)), ("lifetime_l", (1000, 1500, 2000))),
        ),
        Subtype(
            label="water purification tablet pack",
            noun="Purification Tablets",
            price=(7.95, 19.95),
            weight_g=(20, 40),
            size_sets=(("30 tablets",), ("50 tablets",), ("50 tablets", "100 tablets")),
            adjectives=("lightweight", "reliable", "compact"),
            uses=(
                "emergency kits and long-distance travel",
                "backup water treatment on treks",
                "trips where viruses are a concern",
            ),
            materials=(
                "Each chlorine dioxide tablet treats one litre of water.",
                "The tablets are individually sealed in foil to keep them effective for years.",
            ),
            features=(
                "They kill bacteria and viruses in about 30 minutes; allow four hours against "
                "Cryptosporidium.",
                "They weigh almost nothing and make a good backup to a filter.",
                "Unlike iodine, they leave little aftertaste.",
            ),
            tags=("purification", "tablets", "backup"),
            closings=(
                "Keep them dry and out of reach of children.",
                "Opened packs cannot be returned for hygiene reasons; see our returns policy.",
            ),
        ),
    ),
)

CATEGORIES = (
    TENTS,
    SLEEPING_BAGS,
    BACKPACKS,
    HIKING_BOOTS,
    JACKETS,
    TRAIL_RUNNING_SHOES,
    CLIMBING,
    COOKING,
    LIGHTING,
    WATER_FILTRATION,
)


def generate_products(count: int, seed: int) -> list[dict[str, object]]:
    """``count`` products drawn from ``random.Random(seed)``; same arguments, same products.

    SKUs are ``<PREFIX>-<serial>`` with a serial per category, so they stay unique for any count.
    """
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    rng = random.Random(seed)
    shares = [category.share for category in CATEGORIES]
    serials: Counter[str] = Counter()
    name_uses: Counter[str] = Counter()
    products: list[dict[str, object]] = []
    for _ in range(count):
        category = rng.choices(CATEGORIES, weights=shares)[0]
        serials[category.prefix] += 1
        sku = f"{category.prefix}-{serials[category.prefix]:05d}"
        products.append(_make_product(rng, category, sku, name_uses))
    return products


def write_jsonl(products: Iterable[dict[str, object]], path: Path | str) -> int:
    """Write one JSON object per line (UTF-8, ``\\n``); returns the number of lines written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with target.open("w", encoding="utf-8", newline="\n") as out:
        for product in products:
            out.write(json.dumps(product, ensure_ascii=False) + "\n")
            written += 1
    return written


@dataclass(frozen=True)
class _Fit:
    """Who a product is cut for and the sizes it comes in."""

    gender: str | None  # "Men's", "Women's", "Unisex" or None
    sizes: list[str]
    weight_note: str
    weight_factor: float


def _make_product(
    rng: random.Random, category: Category, sku: str, name_uses: Counter[str]
) -> dict[str, object]:
    subtype = rng.choice(category.subtypes)
    brand = rng.choice(category.brands)
    model = rng.choice(category.models)
    line = rng.choice(subtype.lines or category.lines)
    fit = _pick_fit(rng, subtype)
    specs = {name: rng.choice(values) for name, values in subtype.specs}
    noun = subtype.noun.format_map(specs)
    gender_word = f"{fit.gender} " if fit.gender in ("Men's", "Women's") else ""
    base_name = f"{brand} {model}|{line} {gender_word}{noun}"
    name_uses[base_name] += 1
    edition = "" if name_uses[base_name] == 1 else f" {_roman(name_uses[base_name])}"
    model_full = " ".join(part for part in (model + edition, line) if part)
    weight_g = _round_weight(rng.randint(*subtype.weight_g) * fit.weight_factor)
    product: dict[str, object] = {
        "sku": sku,
        "name": f"{brand} {model_full} {gender_word}{noun}",
        "category": category.slug,
        "brand": brand,
        "price": _price(rng, *subtype.price),
        "currency": CURRENCY,
        "stock": _stock(rng),
        "sizes": fit.sizes,
    }
    facts: dict[str, object] = dict(specs)
    label = subtype.label.format_map(specs)
    adjective = rng.choice(subtype.adjectives)
    facts.update(
        brand=brand,
        model=model_full,
        label=f"{gender_word.lower()}{label}",
        a_adj=f"{_article(adjective)} {adjective}",
        use=rng.choice(subtype.uses),
        weight=_weight_text(weight_g),
        weight_note=fit.weight_note,
    )
    product["description"] = _describe(rng, category, subtype, facts)
    product["subcategory"] = subtype.kind or subtype.label
    if fit.gender is not None:
        product["gender"] = fit.gender.removesuffix("'s").lower()
    product["colors"] = rng.sample(category.colors, k=rng.randint(1, 3))
    product["weight_g"] = weight_g
    product.update((name, value) for name, value in specs.items() if not name.startswith("_"))
    product.update(_reviews_and_tags(rng, subtype))
    return product


def _pick_fit(rng: random.Random, subtype: Subtype) -> _Fit:
    if subtype.sizing in ("footwear", "unisex-footwear"):
        rule = rng.choice(FOOTWEAR_RULES) if subtype.sizing == "footwear" else UNISEX_FOOTWEAR_RULE
        gender, firsts, lasts, weight_note, factor = rule
        sizes = [f"EU {n}" for n in range(rng.choice(firsts), rng.choice(lasts) + 1)]
        return _Fit(gender, sizes, weight_note, factor)
    if subtype.sizing == "apparel":
        gender, runs, factor = rng.choice(APPAREL_RULES)
        return _Fit(gender, list(rng.choice(runs)), " in size M", factor)
    return _Fit(None, list(rng.choice(subtype.size_sets)), subtype.weight_note, 1.0)


def _describe(
    rng: random.Random, category: Category, subtype: Subtype, facts: dict[str, object]
) -> str:
    """Two to five sentences: opening, then optional material, weight, features and a closing."""
    sentences = [rng.choice(OPENINGS)]
    if rng.random() < 0.85:
        sentences.append(rng.choice(subtype.materials))
    if rng.random() < 0.55:
        sentences.append(rng.choice(WEIGHT_LINES))
    sentences.extend(rng.sample(subtype.features, k=rng.choice((1, 1, 2))))
    if len(sentences) < 5 and rng.random() < 0.5:
        sentences.append(rng.choice(subtype.closings or category.closings))
    return " ".join(sentence.format_map(facts) for sentence in sentences)


def _reviews_and_tags(rng: random.Random, subtype: Subtype) -> dict[str, object]:
    review_count = int(rng.expovariate(1 / 70))
    tags = list(subtype.tags)
    if rng.random() < 0.08:
        tags.append("new")
    extras: dict[str, object] = {"tags": tags}
    if review_count > 0:
        extras["rating"] = round(min(5.0, max(2.8, rng.gauss(4.4, 0.35))), 1)
        if review_count >= 150:
            tags.append("bestseller")
    extras["review_count"] = review_count
    return extras


def _price(rng: random.Random, low: float, high: float) -> float:
    """A shelf price between low and high ending in .90, .95 or .99 (…9.95 above 30 EUR)."""
    raw = rng.uniform(low, high)
    whole = int(raw) if high < 30 else int(raw // 10) * 10 + 9
    cents = rng.choice((0.95, 0.95, 0.95, 0.9, 0.99))
    return round(whole + cents, 2)


def _stock(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.1:
        return 0
    if roll < 0.3:
        return rng.randint(1, 5)
    if roll < 0.8:
        return rng.randint(6, 40)
    return rng.randint(41, 250)


def _round_weight(grams: float) -> int:
    step = 1 if grams < 100 else 5 if grams < 2000 else 50
    return max(step, round(grams / step) * step)


def _weight_text(grams: int) -> str:
    if grams < 1000:
        return f"{grams} g"
    return f"{grams / 1000:.2f}".rstrip("0").rstrip(".") + " kg"


def _article(word: str) -> str:
    return "an" if word[0] in "aeio" or word.startswith("ul") else "a"


def _roman(number: int) -> str:
    numerals = (
        (1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
        (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"),
    )  # fmt: skip
    parts: list[str] = []
    for value, numeral in numerals:
        count, number = divmod(number, value)
        parts.append(numeral * count)
    return "".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="number of products")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON Lines file to write")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    written = write_jsonl(generate_products(args.count, args.seed), args.out)
    print(f"wrote {written} products to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
