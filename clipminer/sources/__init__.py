"""Video sources: find candidate videos per action and fetch them into a labelled tree.

- :mod:`clipminer.sources.youtube`: ``search-videos``, YouTube Data API v3 search that
  writes a candidates CSV (``action,query,youtube_id,title,channel,published_at,
  duration_seconds,license,url``), resumably.
- :mod:`clipminer.sources.inputs`: what ``fetch-videos`` reads (a candidates CSV, a
  Kinetics annotation CSV, or a list of URLs) as :class:`~clipminer.sources.inputs.FetchItem`.
- :mod:`clipminer.sources.register`: ``DIR/fetch.sqlite``, the status of every item.
- :mod:`clipminer.sources.fetch`: ``fetch-videos``, downloads with yt-dlp's Python API
  into ``DIR/<label>/<id>[_<start>_<end>].mp4`` (folder per label, as ``train-video
  --videos`` reads it).

requests and yt-dlp are imported only inside the functions that use them
(``pip install clipminer[videos]``).
"""
