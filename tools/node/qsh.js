#!/usr/bin/env node
// Reference values from Atlassian's npm atlassian-jwt 2.0.3 (PROTOCOL.md source NPM-JWT).
//
// Reads JSON lines {"method", "url", "base_path"} on stdin and writes one JSON line per input:
// {"canonical": ..., "qsh": ...}, or {"error": message} if the library throws.
// The request object is built the way the library does it for a raw URL (fromMethodAndUrl:
// legacy url.parse with querystring parsing); base_path is passed as the library's baseUrl argument.
'use strict';

const { serve } = require('./jsonlines');
const jwt = require('atlassian-jwt');

function compute(input) {
  const req = jwt.fromMethodAndUrl(input.method, input.url);
  const baseUrl = input.base_path || '';
  return {
    canonical: jwt.createCanonicalRequest(req, false, baseUrl),
    qsh: jwt.createQueryStringHash(req, false, baseUrl),
  };
}

serve(compute);
