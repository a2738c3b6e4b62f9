"""Rendering benchmark: how many personalised MIME messages per second one core makes.

Compares outreach's precompiled path (compile the campaign once per language: Jinja2 + premailer;
then per recipient: sign links, join segments, fill the MIME skeleton) with the naive pipeline
(per recipient: Jinja2 render, premailer, stdlib EmailMessage). With ``--memory`` it streams
100,000 synthetic recipients through the precompiled path and reports the peak RSS.

    python bench/bench_render.py [--contacts 10000] [--sample 200] [--repeats 5]
    python bench/bench_render.py --memory [--contacts 100000]

See bench/README.md for what the figures mean.
"""

from __future__ import annotations

import argparse
import html
import itertools
import os
import platform
import resource
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from outreach.domain.campaign import Campaign
from outreach.domain.delivery import Recipient
from outreach.pipeline.messages import MessageSkeleton, build_with_email_message
from outreach.pipeline.render import (
    CompiledCampaign,
    available_templates,
    compile_campaign,
    links_for,
    personalise,
    render_reference,
)
from outreach.pipeline.tokens import LinkSigner

REPO = Path(__file__).resolve().parent.parent
CAMPAIGN_FILE = REPO / "campaigns" / "world-refugee-day-2018.yaml"
TEMPLATES = REPO / "templates"
NOW = datetime(2027, 6, 20, 9, 0, tzinfo=UTC)

PEOPLE = [
    ("Ana Souza", "São Paulo", "pt-BR"),
    ("Jean-François Tremblay", "Montréal", "fr"),
    ("Zofia Wójcik", "Kraków", "en"),
    ("山田 花子", "東京", "en"),
    ("أحمد محمد", "القاهرة", "en"),
    ("María Fernández", "Barcelona", "es"),
    ("Nikos Papadopoulos", "Athens", "en"),
    ("Aminata Diallo", "Dakar", "fr"),
    ("Lucía Gómez", "Montevideo", "es"),
    ("Jan de Vries", "Amsterdam", "en"),
    ("Claire Dubois", "Bruxelles", "fr"),
    ("Carlos Ramírez", "Ciudad de México", "es"),
]


def load_campaign() -> tuple[Campaign, str]:
    """The real World Refugee Day campaign when its file and loader exist; else the same in code."""
    if CAMPAIGN_FILE.exists():
        try:
            from outreach.pipeline.campaigns import load_campaign as load
        except ImportError:
            pass
        else:
            campaign = load(CAMPAIGN_FILE, templates=available_templates(TEMPLATES))
            return campaign, str(CAMPAIGN_FILE.relative_to(REPO))
    return _campaign_in_code(), "built in code (campaign file or loader missing)"


def _campaign_in_code() -> Campaign:
    body = (
        "Today, to mark World Refugee Day, mayors from **55 cities** around the world are "
        "calling on all local authorities to join them in the campaign Cities #WithRefugees, "
        "to welcome and include refugees in their communities.\n\n"
        "- The Greater **Amman** Municipality uses public spaces to bring people together\n"
        "- The **Berlin** district of Neukölln promotes the Neighbourhood Mothers\n"
        "- The **Madrid** Municipality employs migrants as mediators\n"
    )
    news = [
        {
            "title": {"en": f"Cities #WithRefugees, story {n}", "fr": f"Récit {n}"},
            "date": "2018-06-20",
            "image": f"https://media.metropolis.example.org/refugees/{n}.jpg",
            "image_alt": {"en": "Refugees and residents"},
            "link": f"https://policytransfer.metropolis.example.org/experiences/{n}",
            "body": {"en": body, "fr": body, "es": body},
        }
        for n in range(4)
    ]
    return Campaign.model_validate(
        {
            "id": "world-refugee-day-2018",
            "name": "World Refugee Day 2018: Cities #WithRefugees",
            "sender": {"name": "Metropolis", "address": "news@metropolis.example.org"},
            "reply_to": "secretariat@metropolis.example.org",
            "default_language": "en",
            "messages": {
                "en": {"subject": "World Refugee Day: add your city", "preheader": "55 mayors"},
                "fr": {"subject": "Journée mondiale des réfugiés", "preheader": "55 maires"},
                "es": {"subject": "Día Mundial del Refugiado", "preheader": "55 alcaldes"},
            },
            "intro": {"en": body, "fr": body, "es": body},
            "news": news,
            "calls_to_action": [
                {
                    "id": "sign-statement",
                    "kind": "sign",
                    "url": "https://www.metropolis.example.org/statement",
                    "label": {"en": "Sign the statement", "fr": "Signer", "es": "Firmar"},
                },
                {
                    "id": "policy-transfer-platform",
                    "kind": "link",
                    "url": "https://policytransfer.metropolis.example.org/new",
                    "label": {"en": "Share your experience"},
                },
            ],
        }
    )


def recipients(count: int) -> Iterator[Recipient]:
    """Synthetic recipients, generated one at a time (never a list)."""
    for index, (name, city, language) in zip(range(count), itertools.cycle(PEOPLE), strict=False):
        yield Recipient(
            delivery_id=1_000_000 + index,
            email=f"contact{index}@city{index % 500}.example.org",
            name=name,
            language=language,
            organisation=city,
            country="",
            region="",
            timezone="UTC",
        )


def precompiled(campaign: Campaign, signer: LinkSigner) -> Callable[[Recipient], bytes]:
    """Compile once (Jinja2 + premailer per language) and return the per-recipient builder."""
    compiled: CompiledCampaign = compile_campaign(campaign, templates_dir=TEMPLATES)
    skeletons = {
        language: MessageSkeleton.for_variant(variant=variant, campaign=campaign)
        for language, variant in compiled.variants.items()
    }

    def build(recipient: Recipient) -> bytes:
        variant = compiled.variant_for(recipient.language)
        links = links_for(signer, campaign, recipient, now=NOW)
        message = personalise(variant, recipient, links)
        return skeletons[variant.language].build(
            recipient=recipient, personalised=message, links=links, now=NOW
        )

    return build


def naive(campaign: Campaign, signer: LinkSigner) -> Callable[[Recipient], bytes]:
    """Per recipient: Jinja2 render, premailer, EmailMessage (the pipeline outreach avoids)."""
    compiled = compile_campaign(campaign, templates_dir=TEMPLATES)  # only for subject texts

    def build(recipient: Recipient) -> bytes:
        links = links_for(signer, campaign, recipient, now=NOW)
        message = render_reference(
            campaign, templates_dir=TEMPLATES, recipient=recipient, links=links
        )
        return build_with_email_message(
            variant=compiled.variant_for(recipient.language),
            campaign=campaign,
            recipient=recipient,
            personalised=message,
            links=links,
            now=NOW,
        )

    return build


def measure_precompiled(campaign: Campaign, signer: LinkSigner, count: int) -> tuple[float, float]:
    """Messages per second including the compile step, and the compile time alone."""
    start = time.perf_counter()
    build = precompiled(campaign, signer)
    compiled_at = time.perf_counter()
    for recipient in recipients(count):
        build(recipient)
    end = time.perf_counter()
    return count / (end - start), compiled_at - start


def measure_naive(campaign: Campaign, signer: LinkSigner, count: int) -> float:
    build = naive(campaign, signer)
    build(next(recipients(1)))  # warm Jinja2's template cache, as a long-running sender would
    start = time.perf_counter()
    for recipient in recipients(count):
        build(recipient)
    return count / (time.perf_counter() - start)


def same_pages(campaign: Campaign, signer: LinkSigner, count: int) -> int:
    """How many of ``count`` recipients get the same page from both paths (entities decoded)."""
    compiled = compile_campaign(campaign, templates_dir=TEMPLATES)
    same = 0
    for recipient in recipients(count):
        links = links_for(signer, campaign, recipient, now=NOW)
        fast = personalise(compiled.variant_for(recipient.language), recipient, links)
        slow = render_reference(campaign, templates_dir=TEMPLATES, recipient=recipient, links=links)
        same += html.unescape(fast.html) == html.unescape(slow.html) and fast.text == slow.text
    return same


def spread(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"median {statistics.median(values):,.0f}  (min {low:,.0f}, max {high:,.0f})"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def run_memory(campaign: Campaign, signer: LinkSigner, count: int) -> int:
    print(f"peak RSS before:   {peak_rss_mb():.1f} MB")
    build = precompiled(campaign, signer)
    start = time.perf_counter()
    total = 0
    for recipient in recipients(count):
        total += len(build(recipient))
    elapsed = time.perf_counter() - start
    peak = peak_rss_mb()
    print(
        f"streamed:          {count:,} messages, {total / 1e6:,.0f} MB of MIME in {elapsed:.1f} s"
    )
    print(f"throughput:        {count / elapsed:,.0f} messages/s")
    print(f"peak RSS:          {peak:.1f} MB (target < 150 MB)")
    return 0 if peak < 150 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=None, help="recipients per measurement")
    parser.add_argument("--sample", type=int, default=200, help="recipients for the naive path")
    parser.add_argument("--repeats", type=int, default=5, help="measurements of each path")
    parser.add_argument("--memory", action="store_true", help="stream recipients, report RSS")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    campaign, source = load_campaign()
    signer = LinkSigner(
        secret=secrets.token_bytes(32),
        base_url="https://outreach.metropolis.example.org",
        lifetime=timedelta(days=365),
    )
    print(f"python {platform.python_version()} on {platform.machine()}, pinned to one core")
    print(f"campaign: {source}; languages {', '.join(campaign.languages)}")
    if args.memory:
        return run_memory(campaign, signer, args.contacts or 100_000)

    contacts = args.contacts or 10_000
    size = len(precompiled(campaign, signer)(next(recipients(1))))
    print(f"message size: {size / 1024:.1f} KB of MIME")
    same = same_pages(campaign, signer, 24)
    print(f"same page from both paths: {same} of 24 recipients")

    fast: list[float] = []
    compile_times: list[float] = []
    for _ in range(args.repeats):
        rate, compile_time = measure_precompiled(campaign, signer, contacts)
        fast.append(rate)
        compile_times.append(compile_time * 1000)
    slow = [measure_naive(campaign, signer, args.sample) for _ in range(args.repeats)]
    ratio = statistics.median(fast) / statistics.median(slow)
    print(f"precompiled ({contacts:,} recipients, compile included), messages/s: {spread(fast)}")
    print(f"  compile once per campaign (all languages), ms: {spread(compile_times)}")
    print(f"naive ({args.sample} recipients), messages/s: {spread(slow)}")
    print(f"ratio: {ratio:,.0f}x  (targets: >= 3,000 messages/s and >= 70x naive)")
    return 0 if statistics.median(fast) >= 3000 and ratio >= 70 else 1


if __name__ == "__main__":
    sys.exit(main())
