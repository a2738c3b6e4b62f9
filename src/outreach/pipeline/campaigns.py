"""Campaign files: read ``campaigns/*.yaml``, resolve its news files, report every problem.

A campaign file is read with a safe YAML loader that remembers the line of every key and list
item. Each problem -- unreadable file, YAML syntax, duplicate or unknown key, a value the
:class:`~outreach.domain.campaign.Campaign` model refuses, a rule spanning several fields -- is
reported as ``file:line: field.path: message``, and all of them are collected before anything
is raised, so staff fix a file in one pass.

News items written as ``source: amman`` take their texts from ``news/amman.<lang>.md`` next to
the campaign file, one file per campaign language: a YAML front matter (``title`` and optionally
``date``, ``image``, ``image_alt``, ``link``) between ``---`` lines, then the Markdown body.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from outreach.domain.campaign import LANGUAGE_CODE, Campaign, Reminder
from outreach.errors import CampaignDefinitionError, Problem

FieldPath = tuple[Any, ...]

_BOOL_TAG = "tag:yaml.org,2002:bool"
_SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_FRONT_MATTER_KEYS = ("title", "date", "image", "image_alt", "link")
_LOCALISED_IN_FILE = ("title", "image_alt")


class _Loader(yaml.SafeLoader):
    """Safe YAML where only true/false are booleans: ``no:`` stays the Norwegian language code."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_campaign(path: Path, *, templates: Collection[str]) -> Campaign:
    """The campaign in ``path`` with its news files resolved; raises
    :class:`CampaignDefinitionError` listing every problem found."""
    campaign, problems = _load(path, templates=templates)
    if campaign is None:
        raise CampaignDefinitionError(problems)
    return campaign


def validate_file(path: Path, *, templates: Collection[str]) -> list[Problem]:
    """Every problem in the campaign file ``path`` (and its news files); empty when it is fine."""
    return _load(path, templates=templates)[1]


# --- reading YAML with the line of every key ------------------------------------------------


@dataclass
class _Tree:
    """A parsed YAML document: its data, the line of every key/item path, the list paths."""

    data: Any = None
    lines: dict[FieldPath, int] = field(default_factory=dict)
    lists: set[FieldPath] = field(default_factory=set)


@dataclass
class _Where:
    """Turns a field path into a located problem; paths may point into news files too."""

    file: str
    lines: dict[FieldPath, tuple[str, int]]
    lists: set[FieldPath]

    def problem(self, path: FieldPath, message: str) -> Problem:
        name = _name(path, self.lists)
        for end in range(len(path), -1, -1):
            if (hit := self.lines.get(path[:end])) is not None:
                return Problem(hit[0], hit[1], name, message)
        return Problem(self.file, None, name, message)


def _name(path: FieldPath, lists: set[FieldPath]) -> str:
    """``calls_to_action[1].url`` for ``("calls_to_action", 1, "url")``."""
    out = ""
    for i, part in enumerate(path):
        if isinstance(part, int) and path[:i] in lists:
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _read_text(
    path: Path, problems: list[Problem], *, missing: Problem | None = None
) -> str | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        problems.append(missing or Problem(str(path), None, "", "file not found"))
        return None
    except OSError as err:
        problems.append(Problem(str(path), None, "", f"cannot read the file: {err.strerror}"))
        return None
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        message = f"not valid UTF-8 (byte 0x{raw[err.start]:02x}); save the file as UTF-8"
        problems.append(Problem(str(path), line, "", message))
        return None


def _read_yaml(text: str, *, file: str, problems: list[Problem], offset: int = 0) -> _Tree | None:
    """Compose the node tree, index it (lines, duplicates), then construct the data.
    ``None`` when the text cannot be used at all; ``offset`` shifts line numbers."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return _Tree()
        tree = _Tree(lines={(): root.start_mark.line + 1 + offset})
        index = _Indexer(loader, tree, file=file, offset=offset, problems=problems)
        if not index.node(root, ()):
            return None
        tree.data = loader.construct_document(root)
        return tree
    except yaml.MarkedYAMLError as err:
        mark, start = err.problem_mark or err.context_mark, err.context_mark
        line = mark.line + 1 + offset if mark else None
        what = err.problem or err.context
        if err.problem and err.context:
            started = f", line {start.line + 1 + offset}" if start else ""
            what = f"{err.problem} ({err.context}{started})"
        problems.append(Problem(file, line, "", f"invalid YAML: {what}"))
    except RecursionError:
        problems.append(Problem(file, None, "", "nested too deeply"))
    finally:
        loader.dispose()
    return None


@dataclass
class _Indexer:
    loader: _Loader
    tree: _Tree
    file: str
    offset: int
    problems: list[Problem]
    seen: set[int] = field(default_factory=set)

    def node(self, node: yaml.Node, path: FieldPath) -> bool:
        """Record lines below ``node``; False on a problem that stops construction."""
        if id(node) in self.seen:  # the composer hands out an anchored node again for *alias
            message = "anchors and aliases (&name, *name) are not supported; write the value out"
            self._report(path, message, self.tree.lines.get(path))
            return False
        self.seen.add(id(node))
        ok = True
        if isinstance(node, yaml.SequenceNode):
            self.tree.lists.add(path)
            for i, item in enumerate(node.value):
                self.tree.lines[(*path, i)] = item.start_mark.line + 1 + self.offset
                ok = self.node(item, (*path, i)) and ok
        elif isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1 + self.offset
                if not isinstance(key_node, yaml.ScalarNode):
                    self._report(path, "a key must be a plain name, not a list or mapping", line)
                    ok = False
                    continue
                key = self.loader.construct_object(key_node)
                if key in first:
                    self._report((*path, key), f"duplicate key (first on line {first[key]})", line)
                first.setdefault(key, line)
                self.tree.lines[(*path, key)] = line
                ok = self.node(value_node, (*path, key)) and ok
        return ok

    def _report(self, path: FieldPath, message: str, line: int | None) -> None:
        self.problems.append(Problem(self.file, line, _name(path, self.tree.lists), message))


# --- the campaign ----------------------------------------------------------------------------


def _load(path: Path, *, templates: Collection[str]) -> tuple[Campaign | None, list[Problem]]:
    file = str(path)
    problems: list[Problem] = []
    text = _read_text(path, problems)
    tree = None if text is None else _read_yaml(text, file=file, problems=problems)
    if tree is not None and not isinstance(tree.data, dict):
        found = "nothing" if tree.data is None else f"a {type(tree.data).__name__}"
        message = f"expected a mapping of campaign fields (id, name, sender, ...), found {found}"
        problems.append(Problem(file, tree.lines.get(()), "", message))
    if tree is None or not isinstance(tree.data, dict):
        return None, problems
    data: dict[Any, Any] = tree.data
    where = _Where(file, {p: (file, n) for p, n in tree.lines.items()}, tree.lists)
    from_files = _resolve_news(data, where=where, base=path.parent, problems=problems)
    campaign = None
    try:
        campaign = Campaign.model_validate(data)
    except ValidationError as err:
        localised = set(_localised_paths(data))
        problems.extend(where.problem(_loc(e), _explain(e, localised)) for e in err.errors())
    problems.extend(_rules(data, where=where, templates=templates, from_files=from_files))
    problems.sort(key=lambda p: (p.file != file, p.file, p.line or 0))
    return (None if problems else campaign), problems


def _at(data: Any, *path: Any) -> Any:
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def _items(data: Any, key: str) -> Iterator[tuple[int, dict[Any, Any]]]:
    value = data.get(key)
    for i, item in enumerate(value if isinstance(value, list) else []):
        if isinstance(item, dict):
            yield i, item


def _campaign_languages(data: dict[Any, Any]) -> list[str]:
    """Valid language codes of the campaign, default first; they name news files."""
    messages = data.get("messages")
    found = [data.get("default_language"), *(messages if isinstance(messages, dict) else ())]
    valid = [lang for lang in found if isinstance(lang, str) and LANGUAGE_CODE.match(lang)]
    return list(dict.fromkeys(valid))


# --- news files --------------------------------------------------------------------------------


def _resolve_news(
    data: dict[Any, Any], *, where: _Where, base: Path, problems: list[Problem]
) -> set[int]:
    """Replace every ``source`` news item by the texts of its files; their indexes."""
    resolved: set[int] = set()
    for i, item in _items(data, "news"):
        if item.get("source") is None:
            continue
        resolved.add(i)
        path: FieldPath = ("news", i)
        source = item["source"]
        if not isinstance(source, str) or not _SOURCE_NAME.match(source):
            message = "should name news files, such as 'amman' for news/amman.en.md"
            problems.append(where.problem((*path, "source"), message))
            continue
        for key in item:
            if key != "source":
                message = f"not allowed beside 'source': news/{source}.<lang>.md gives it"
                problems.append(where.problem((*path, key), message))
        texts: dict[str, Any] = {"title": {}, "body": {}, "image_alt": {}}
        for lang in _campaign_languages(data):
            news_file = base / "news" / f"{source}.{lang}.md"
            missing = where.problem((*path, "source"), f"news file {news_file} not found")
            text = _read_text(news_file, problems, missing=missing)
            if text is not None:
                _read_news_file(
                    text,
                    lang,
                    file=str(news_file),
                    into=texts,
                    path=path,
                    where=where,
                    problems=problems,
                )
        data["news"][i] = texts
    return resolved


def _read_news_file(
    text: str,
    lang: str,
    *,
    file: str,
    into: dict[str, Any],
    path: FieldPath,
    where: _Where,
    problems: list[Problem],
) -> None:
    lines = text.split("\n")
    close = next((n for n in range(1, len(lines)) if lines[n].strip() == "---"), None)
    if lines[0].strip() != "---" or close is None:
        message = "expected a front matter (title: ...) between two '---' lines at the top"
        problems.append(Problem(file, 1, "", message))
        return
    tree = _read_yaml("\n".join(lines[1:close]), file=file, problems=problems, offset=1)
    if tree is None:
        return
    front = tree.data if isinstance(tree.data, dict) else {}
    if "title" not in front:
        problems.append(Problem(file, 1, "title", "the front matter needs a title"))
    for key, value in front.items():
        line = tree.lines[(key,)]
        if key not in _FRONT_MATTER_KEYS:
            expected = ", ".join(_FRONT_MATTER_KEYS)
            problems.append(Problem(file, line, str(key), f"unknown key; expected {expected}"))
        elif key in _LOCALISED_IN_FILE:
            into[key][lang] = value
            where.lines[(*path, key, lang)] = (file, line)
        elif key in into and into[key] != value:
            message = (
                f"differs from {where.lines[(*path, key)][0]}; one {key} serves every language"
            )
            problems.append(Problem(file, line, key, message))
        else:
            into[key] = value
            where.lines[(*path, key)] = (file, line)
    body_start = next((n for n in range(close + 1, len(lines)) if lines[n].strip()), close)
    into["body"][lang] = "\n".join(lines[close + 1 :]).strip()
    where.lines[(*path, "body", lang)] = (file, body_start + 1)


# --- validation errors in plain words ---------------------------------------------------------

_PLAIN = {
    "missing": "required, but missing",
    "string_type": "should be text",
    "dict_type": "should be a mapping (key: value lines)",
    "model_type": "should be a mapping (key: value lines)",
    "list_type": "should be a list (lines starting with '- ')",
    "string_too_short": "must not be empty",
    "bool_type": "should be true or false",
    "bool_parsing": "should be true or false",
}


def _loc(error: ErrorDetails) -> FieldPath:
    return tuple(part for part in error["loc"] if part != "[key]")


def _explain(error: ErrorDetails, localised: set[FieldPath]) -> str:
    kind, value, loc = error["type"], error.get("input"), _loc(error)
    if kind == "extra_forbidden":
        known = sorted(_model_at(loc[:-1]).model_fields)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        if close:
            return f"unknown key; did you mean {close[0]!r}?"
        return f"unknown key; expected one of {', '.join(known)}"
    if kind == "missing" and loc[0] == "calls_to_action" and loc[-1] == "url":
        return "required, but missing: every call to action needs the url its button leads to"
    if kind == "dict_type" and loc in localised:
        return "should give a text per language, such as 'en: ...' on its own line"
    if kind.startswith("url_"):
        return f"{value!r} is not a full URL such as https://example.org/page"
    if kind.startswith("datetime_"):
        return "should be a local date and time such as 2027-06-20T09:00"
    if kind.startswith("date_"):
        return "should be a date such as 2018-06-20"
    if kind == "string_pattern_mismatch":
        longest = re.search(r"\{0,(\d+)\}\$$", str(error.get("ctx", {}).get("pattern", "")))
        limit = f" (at most {int(longest.group(1)) + 1} characters)" if longest else ""
        return f"{value!r} should use only lowercase letters, digits and hyphens{limit}"
    if kind == "value_error" and error["msg"].startswith("value is not a valid email"):
        return f"{value!r} is not a valid email address" + error["msg"].partition("address")[2]
    if kind in _PLAIN:
        return _PLAIN[kind]
    return error["msg"].removeprefix("Value error, ").replace("Input should be", "should be", 1)


def _model_at(path: FieldPath) -> type[BaseModel]:
    """The model that validates the mapping at ``path`` (for suggesting its keys)."""
    current: Any = Campaign
    for part in path:
        if isinstance(current, type) and issubclass(current, BaseModel):
            current = current.model_fields[part].annotation
        else:  # list[X] or dict[K, X]
            current = get_args(current)[-1]
        if get_origin(current) in (Union, UnionType):
            current = next(arg for arg in get_args(current) if arg is not type(None))
    return current  # type: ignore[no-any-return]


# --- rules across fields -----------------------------------------------------------------------


def _localised_paths(data: dict[Any, Any]) -> Iterator[FieldPath]:
    yield ("intro",)
    for i, _ in _items(data, "news"):
        yield from (("news", i, key) for key in ("title", "body", "image_alt"))
    for i, _ in _items(data, "calls_to_action"):
        yield ("calls_to_action", i, "label")
        yield from (("calls_to_action", i, "statement", key) for key in ("title", "text"))
    for i, _ in _items(data, "reminders"):
        yield from (("reminders", i, key) for key in ("subject", "preheader"))


def _rules(
    data: dict[Any, Any], *, where: _Where, templates: Collection[str], from_files: set[int]
) -> Iterator[Problem]:
    messages, default = data.get("messages"), data.get("default_language")
    if isinstance(messages, dict):
        reported: set[str] = set()
        if isinstance(default, str) and LANGUAGE_CODE.match(default) and default not in messages:
            reported.add(default)
            message = f"the default language {default!r} has no subject in 'messages'"
            yield where.problem(("default_language",), message)
        for texts_path in _localised_paths(data):
            texts = _at(data, *texts_path)
            for lang in texts if isinstance(texts, dict) else ():
                if isinstance(lang, str) and lang not in messages and lang not in reported:
                    reported.add(lang)
                    message = f"language {lang!r} has texts but no subject in 'messages'"
                    yield where.problem((*texts_path, lang), message)
    yield from _template_rules(data, where=where, templates=templates)
    ids: dict[str, int] = {}
    for i, cta in _items(data, "calls_to_action"):
        path: FieldPath = ("calls_to_action", i)
        cta_id, kind, statement = cta.get("id"), cta.get("kind"), cta.get("statement")
        if isinstance(cta_id, str) and cta_id in ids:
            message = f"duplicate call-to-action id (also calls_to_action[{ids[cta_id]}])"
            yield where.problem((*path, "id"), message)
        elif isinstance(cta_id, str):
            ids[cta_id] = i
        if kind == "sign" and statement is None:
            message = "a 'sign' call to action needs a statement (title and text to sign)"
            yield where.problem((*path, "statement"), message)
        if kind == "link" and statement is not None:
            yield where.problem((*path, "statement"), "only a 'sign' call to action has one")
    for i, item in _items(data, "news"):
        title = item.get("title")
        if i not in from_files and isinstance(default, str) and not _at(title, default):
            message = f"a news item needs a title in the default language {default!r}"
            yield where.problem(("news", i, "title"), message)


def _template_rules(
    data: dict[Any, Any], *, where: _Where, templates: Collection[str]
) -> Iterator[Problem]:
    available = ", ".join(sorted(templates)) or "none"
    wanted: list[tuple[FieldPath, Any]] = [
        (("template",), data.get("template", Campaign.model_fields["template"].default))
    ]
    for i, reminder in _items(data, "reminders"):
        default = Reminder.model_fields["template"].default
        wanted.append((("reminders", i, "template"), reminder.get("template", default)))
    for path, name in wanted:
        if isinstance(name, str) and name not in templates:
            yield where.problem(path, f"unknown template {name!r}; available: {available}")
