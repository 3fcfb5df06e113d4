"""GPS coordinates from a photograph's EXIF (Pillow reads the GPS IFD; nothing else is decoded)."""
from __future__ import annotations

import math

GPS_IFD = 0x8825
LAT_REF, LAT, LON_REF, LON = 1, 2, 3, 4


def exif_latlon(path) -> tuple[float, float] | None:
    """(lat, lon) in degrees from the EXIF GPS tags of `path`, or None when the file has none (or is not an
    image Pillow reads: those are reported by predict's decoding, not here)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            gps = image.getexif().get_ifd(GPS_IFD)
    except Exception:  # noqa: BLE001 - no EXIF location; the image itself is judged when it is decoded
        return None
    if not gps or LAT not in gps or LON not in gps:
        return None
    try:
        lat = _degrees(gps[LAT]) * (-1 if str(gps.get(LAT_REF, "N")).upper().startswith("S") else 1)
        lon = _degrees(gps[LON]) * (-1 if str(gps.get(LON_REF, "E")).upper().startswith("W") else 1)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return (lat, lon) if math.isfinite(lat) and math.isfinite(lon) else None


def _degrees(value) -> float:
    """EXIF's (degrees, minutes, seconds) rationals, or a single number, -> decimal degrees."""
    if isinstance(value, (tuple, list)):
        parts = [float(v) for v in value] + [0.0, 0.0]
        return parts[0] + parts[1] / 60 + parts[2] / 3600
    return float(value)


def gps_ifd(lat: float, lon: float) -> dict:
    """The EXIF GPS IFD for (lat, lon), as Pillow writes it: `exif[0x8825] = gps_ifd(lat, lon)` (for tests and
    for tools that tag pictures)."""
    from PIL.TiffImagePlugin import IFDRational

    def dms(x):
        x = abs(x)
        d = int(x)
        m = int((x - d) * 60)
        s = (x - d - m / 60) * 3600
        return (IFDRational(d, 1), IFDRational(m, 1), IFDRational(round(s * 10000), 10000))

    return {LAT_REF: "N" if lat >= 0 else "S", LAT: dms(lat), LON_REF: "E" if lon >= 0 else "W", LON: dms(lon)}
