"""HTTP/3 over QUIC (``--http3``): a UDP endpoint, the HTTP/3 protocol, and QUIC backends behind a seam.

* ``endpoint``: the ``asyncio.DatagramProtocol``; routes datagrams to connections by connection ID and
  drops what is not worth a backend's work;
* ``protocol``: one connection; its request streams run the shared ASGI request cycle;
* ``seam``: the interface a QUIC library is used through; ``aioquic_backend`` implements it;
* ``options`` and ``serve``: the ``--http3`` options and the listener's start.

Only ``options`` is imported without a QUIC library installed.
"""
