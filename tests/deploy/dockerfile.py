"""Reading a Dockerfile and a .dockerignore the way the Docker builder does, for the tests.

Only what the deploy tests need: instructions with continuation lines joined and comments
dropped, build stages, and the .dockerignore pattern rules (last match wins, `!` re-includes,
a pattern that matches a parent directory matches everything under it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """The JSON array form (`CMD ["a", "b"]`); ValueError for the shell form."""
        argv = json.loads(self.arguments)
        if not isinstance(argv, list) or not all(isinstance(arg, str) for arg in argv):
            raise ValueError(f"{self.keyword} is not in exec form: {self.arguments}")
        return argv


@dataclass
class Stage:
    image: str
    alias: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse_instructions(text: str) -> list[Instruction]:
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical = (pending + line).strip()
        pending = ""
        if logical:
            keyword, _, arguments = logical.partition(" ")
            instructions.append(Instruction(keyword.upper(), arguments.strip()))
    return instructions


def parse_stages(text: str) -> list[Stage]:
    stages: list[Stage] = []
    for instruction in parse_instructions(text):
        if instruction.keyword == "FROM":
            words = [w for w in instruction.arguments.split() if not w.startswith("--")]
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=words[0], alias=alias))
        elif stages:
            stages[-1].instructions.append(instruction)
    return stages


def parse_env(instruction: Instruction) -> dict[str, str]:
    """`ENV A=1 B=2` (the only ENV form we write) as a dict."""
    pairs = re.findall(r'(\w+)=("[^"]*"|\S+)', instruction.arguments)
    return {key: value.strip('"') for key, value in pairs}


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z")


@dataclass(frozen=True)
class DockerIgnore:
    rules: tuple[tuple[bool, re.Pattern[str]], ...]  # (excludes, pattern)

    @classmethod
    def read(cls, path: Path) -> DockerIgnore:
        rules = []
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            excludes = not line.startswith("!")
            pattern = line.lstrip("!").strip().strip("/")
            rules.append((excludes, _pattern_regex(pattern)))
        return cls(tuple(rules))

    def excludes(self, relative_path: str) -> bool:
        """True when the file at `relative_path` is left out of the build context."""
        parts = relative_path.strip("/").split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for rule_excludes, regex in self.rules:
            if any(regex.match(candidate) for candidate in candidates):
                excluded = rule_excludes
        return excluded
