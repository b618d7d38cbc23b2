"""Refuses an Office file whose zip would inflate past its bounds, before any library opens it.

python-docx, openpyxl and python-pptx inflate members through ``zipfile``, which
never produces more than a member's declared size (a member that lies fails its
CRC check). So checking the declared sizes in the central directory, the same
directory ``zipfile`` reads, bounds what the libraries can be made to inflate.
"""

from __future__ import annotations

from nanobot_api.domain.attachments import MIB, ExtractionLimits
from nanobot_api.domain.errors import InvalidRequest, PayloadTooLarge
from nanobot_api.domain.filetypes import ZipMember, zip_directory


def check_zip(data: bytes, name: str, limits: ExtractionLimits) -> tuple[ZipMember, ...]:
    """Returns the archive's members if it is within ``limits``.

    Raises PayloadTooLarge naming the file and the bound it crosses (member count,
    inflated size, compression ratio), InvalidRequest for an encrypted member, and
    UnsupportedMediaType when there is no readable zip directory.
    """
    members = zip_directory(data, name, max_members=limits.max_zip_members)
    total = 0
    for member in members:
        if member.encrypted:
            raise InvalidRequest(f"Could not read '{name}': it is encrypted")
        total += member.size
        if total > limits.max_unzipped_bytes:
            raise PayloadTooLarge(
                f"File '{name}' inflates to more than "
                f"{limits.max_unzipped_bytes // MIB} MB when unzipped"
            )
        # Small members may compress extremely well (a run of empty cells) and are
        # harmless; only a large member with an extreme ratio is a bomb.
        ratio = member.size / max(member.compressed_size, 1)
        if member.size > limits.ratio_floor_bytes and ratio > limits.max_ratio:
            raise PayloadTooLarge(
                f"File '{name}' looks like a zip bomb: member '{member.name}' "
                f"inflates {ratio:.0f}x (at most {limits.max_ratio}x)"
            )
    return members


def xml_size(members: tuple[ZipMember, ...]) -> int:
    """How many bytes of XML a library would parse whole: every ``.xml`` and ``.rels``."""
    return sum(m.size for m in members if m.name.endswith((".xml", ".rels")))


def too_much_xml(name: str, limits: ExtractionLimits) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"File '{name}' holds more than {limits.max_parsed_xml_bytes // MIB} MB of XML to read"
    )
