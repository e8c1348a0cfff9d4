"""The Atlassian Connect protocol: qsh, token extraction and verification, signed install, lifecycle payloads,
outbound signing, the URL rule and the descriptor. Pure: no AWS, no event shapes; the only I/O is fetching
install keys from Atlassian's CDN."""
