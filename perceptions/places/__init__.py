"""Geography of predictions: where each image is, and scores read at the scale of streets and neighbourhoods.

- `columns`: finding the path, coordinate and other metadata columns of a table among common spellings.
- `tables`: metadata tables (CSV, Parquet/GeoParquet, GeoJSON, GeoPackage, any file GeoPandas reads) -> one row
  per image with its resolved path, WGS 84 lat/lon and the columns carried through.
- `exif`: GPS coordinates from a photograph's EXIF (Pillow).
- `sources`: `PlaceSources`, what `perceptions predict` discovers images and their locations with (tables,
  EXIF GPS, Place Pulse names) and the coordinate checks.
- `panoramas`: `PanoramaViews`, the predict pipeline's views hook: 2:1 equirectangular panoramas cut into
  perspective views (py360convert), one row per view and one aggregate row per panorama.
- `aggregate`: predictions -> H3 hexagons, areas (polygons) or street segments, with coverage (`n`,
  `sufficient`) and per-study summaries (`perceptions aggregate`).
- `geofiles`: reading predictions/aggregates as geometries, writing GeoPackage/GeoParquet/GeoJSON/CSV.
- `html_map`: one self-contained HTML file with an interactive Leaflet map (`perceptions map --html`).

Optional libraries (geopandas, h3, pyproj, shapely) come from the `[geo]` extra and are imported where used
through `perceptions.extras.require`. This layer sits above `predict` and imports only from it and below.
"""
