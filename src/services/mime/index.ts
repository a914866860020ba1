/**
 * The MIME layer: structure parsing, header decoding, the XIMSS XML presentation, reply
 * templates, message composition and part access for HTTP.
 */
export type { Address, CopiedMime, HeaderField, MimePart, PartResolver, ResolvedFile } from './types.js';
export { findPart, headerValue, headerValues, normalizePartID, parseHeaderBlock, parseMime, walkParts } from './parse.js';
export { addressDisplay, decodeHeaderText, parseAddressList, parseDateHeader, parsePriority } from './headers.js';
export { decodeBytes, decodeRawHeader } from './charset.js';
export { messageToXml, type MessageXmlOptions } from './to-xml.js';
export { replyTemplate, type ReplyMode, type ReplyOptions } from './reply.js';
export { composeMessage, type ComposeOptions } from './compose.js';
export { contentTypeOf, decodePartBody, findRelated, partBytes, partHeaderBytes } from './parts.js';
export { decodeTextForSearch } from './text.js';
