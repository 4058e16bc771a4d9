"""Object model: type registry, prop/state/derived fields, the object tree."""

from emu.qom.fields import derived, fields_of, link, links_of, prop, state
from emu.qom.object import TYPES, Object, implied_objects, register_type

__all__ = ["Object", "TYPES", "derived", "fields_of", "implied_objects", "link", "links_of",
           "prop", "register_type", "state"]
