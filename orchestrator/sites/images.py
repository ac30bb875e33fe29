"""Site images built from a recipe (`site.image_requested`): what may be built, the Dockerfile,
where it goes, and which old tags go. Pure; `swarm.builds` builds, pushes and deletes.

A recipe is an allowed default image and Debian package names (the contract checks each against
Debian's name rule). Builds have no network: the packages come from a local repository of
.debs (`BUILD_PACKAGES_DIR`) that travels in the build context. A first stage in the tools image
(Debian's apt and dpkg) resolves the packages and their dependencies against that repository
alone, as if nothing were installed, and unpacks them; the site's image is the parent with those
files copied on top. Nothing runs in the parent: no package's maintainer scripts, no command of
the site's (there are none to give), and its user and entrypoint stay the parent's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from orchestrator.errors import ImageNotAllowed
from orchestrator.labels import IMAGE_RECIPE, IMAGE_SITE, IMAGE_VERSION
from orchestrator.slices import Admission
from orchestrator_contract.sites import ImageRecipe, service_name

# The build context's directory holding the package repository (the tools stage copies it).
PACKAGES_DIR = "debs"


@dataclass(frozen=True)
class Build:
    """An admitted recipe: what to build and where it goes."""

    site_id: int
    version: int
    parent: str
    packages: tuple[str, ...]
    repository: str  # REGISTRY/site_0042
    tools_image: str

    @property
    def tag(self) -> str:
        return str(self.version)

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def recipe(self) -> str:
        """A digest of everything the image is made of but the repository's contents."""
        text = "\n".join([self.parent, self.tools_image, *self.packages])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def labels(self) -> dict[str, str]:
        return {IMAGE_RECIPE: self.recipe, IMAGE_SITE: str(self.site_id), IMAGE_VERSION: self.tag}


def admit_build(site_id: int, version: int, recipe: ImageRecipe, policy: Admission) -> Build:
    """The build a recipe asks for, or ImageNotAllowed: the parent must be an allowed default image
    and the packages at most `MAX_IMAGE_PACKAGES` (duplicates count once)."""
    if (parent := policy.allowed_default_image(recipe.parent)) is None:
        raise ImageNotAllowed(f"parent image {recipe.parent!r} is not an allowed default image")
    packages = tuple(sorted(set(recipe.packages)))
    if len(packages) > policy.max_image_packages:
        raise ImageNotAllowed(f"an image has at most {policy.max_image_packages} packages, not {len(packages)}")
    return Build(
        site_id=site_id,
        version=version,
        parent=parent,
        packages=packages,
        repository=image_repository(site_id, policy.registry),
        tools_image=policy.build_tools_image,
    )


def image_repository(site_id: int, registry: str) -> str:
    """`REGISTRY/site_0042`: the site's own namespace, which `admission.resolve_image` admits."""
    return f"{registry.rstrip('/')}/{service_name(site_id)}"


# apt reads only the local repository (no other source, no lists of the tools image), resolves
# against an empty package database (every dependency is unpacked: the parent may have no libc),
# and `copy:` makes it fetch the .debs into the archive directory where they are unpacked.
_APT = (
    "-o Dir::Etc::SourceList=/tmp/sources.list -o Dir::Etc::SourceParts=- -o Dir::State::Status=/tmp/status "
    "-o Dir::State::Lists=/tmp/lists -o Dir::Cache::Archives=/tmp/archives -o Debug::NoLocking=1"
)


def dockerfile(build: Build) -> str:
    """The generated Dockerfile. Package names are safe words (the contract's pattern), so they are
    written as they are; nothing else of the event reaches it."""
    lines = [f"FROM {build.parent}"]
    if build.packages:
        names = " ".join(build.packages)
        lines = [
            f"FROM {build.tools_image} AS packages",
            f"COPY {PACKAGES_DIR} /debs",
            "RUN set -eu; "
            "echo 'deb [trusted=yes] copy:/debs ./' >/tmp/sources.list; : >/tmp/status; "
            "mkdir -p /tmp/lists/partial /tmp/archives/partial /out; "
            f"apt-get {_APT} -q update; "
            f"apt-get {_APT} -y -q --no-install-recommends --download-only install {names}; "
            'for deb in /tmp/archives/*.deb; do dpkg-deb -x "$deb" /out; done; '
            "rm -rf /out/usr/share/doc /out/usr/share/man /out/usr/share/info; ldconfig -r /out",
            f"FROM {build.parent}",
            "COPY --from=packages /out/ /",
        ]
    labels = " ".join(f'{key}="{value}"' for key, value in sorted(build.labels.items()))
    return "\n".join([*lines, f"LABEL {labels}", ""])


def newest_tag(tags: list[str]) -> int | None:
    """The highest version among a repository's tags (tags that are no version are not ours)."""
    versions = [int(tag) for tag in tags if tag.isdigit() and len(tag) < 20]
    return max(versions, default=None)


def tags_to_delete(tags: list[str], keep: int) -> list[str]:
    """The tags past the newest `keep` versions, oldest first; tags that are no version are kept."""
    versions = sorted({int(tag) for tag in tags if tag.isdigit() and len(tag) < 20}, reverse=True)
    return [str(version) for version in sorted(versions[keep:])]


def tags_in_use(repository: str, images: Iterable[str]) -> set[str]:
    """The tags of `repository` among `images` (references a service runs or rolls back to,
    `repo:tag@sha256:...` or `repo:tag`): garbage collection leaves them, or the swarm could not
    start the site's task again on another node."""
    found = set()
    for image in images:
        name = image.split("@", 1)[0]
        head, colon, tag = name.rpartition(":")
        if colon and "/" not in tag and head == repository:
            found.add(tag)
    return found


def missing_packages(wanted: Iterable[str], index: Iterable[str]) -> list[str]:
    """The names among `wanted` that a repository's `Packages` index (its lines) neither has nor
    provides, in the order asked. Checked before building, so a mistyped name fails at once and is
    named. Lenient where apt is (field names in any case, a folded `Provides`, CRLF): a name apt
    would find must never fail here."""
    known: set[str] = set()
    field = ""
    for number, line in enumerate(index):
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line[:1] in (" ", "\t"):  # a continuation of the field before
            value = line
        else:
            field, _, value = line.partition(":")
            field = field.strip().lower()
        if field == "package":
            known.add(value.strip())
        elif field == "provides":
            known.update(item.split("(")[0].strip() for item in value.split(","))
    return [name for name in wanted if name not in known]


def log_tail(log: str, lines: int = 20, limit: int = 2000) -> str:
    """The build log's last lines, at most `limit` characters (the end, where the error is)."""
    tail = "\n".join(log.rstrip("\n").splitlines()[-lines:])
    return tail[-limit:]
