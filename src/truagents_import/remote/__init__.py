"""The SFTP side: the endpoint and its filesystem, keys, host-key pinning, the embedded server."""
