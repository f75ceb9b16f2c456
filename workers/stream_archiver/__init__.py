"""The stream archiver: each live audio stream on ``exotel.stream.audio`` becomes one WAV in S3.

``exopipe worker stream-archiver`` (``app.py``). A stream's audio is spilled to disk as its frames
arrive (``assembly.py``), turned into a WAV when its ``closed`` record comes or it goes quiet
(``partition.py``), uploaded once (``archive.py``), and announced on ``exotel.stream.archived``.
Offsets never pass the first record of a stream that is not archived yet (``ledger.py``).
"""
