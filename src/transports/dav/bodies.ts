/** The request bodies of PROPFIND, PROPPATCH and LOCK (RFC 4918 section 14), from a parsed DavElement. */
import { DAV_NS, DavBodyError, child, clark, standalone, type DavElement } from './xml.js';

const D = (local: string): string => clark(DAV_NS, local);

export type PropfindRequest =
  | { kind: 'allprop'; include: string[] }
  | { kind: 'propname' }
  | { kind: 'prop'; names: string[] };

/** A PROPFIND body; undefined (an empty body) asks for allprop. */
export function parsePropfind(root: DavElement | undefined): PropfindRequest {
  if (!root) return { kind: 'allprop', include: [] };
  if (root.name !== D('propfind')) throw new DavBodyError('the body of PROPFIND must be a DAV:propfind element');
  const prop = child(root, D('prop'));
  if (prop) return { kind: 'prop', names: prop.children.map((c) => c.name) };
  if (child(root, D('propname'))) return { kind: 'propname' };
  if (child(root, D('allprop'))) return { kind: 'allprop', include: child(root, D('include'))?.children.map((c) => c.name) ?? [] };
  throw new DavBodyError('DAV:propfind holds none of prop, propname and allprop');
}

export interface PropertyUpdate {
  action: 'set' | 'remove';
  /** Clark notation. */
  name: string;
  /** set: the element as a self-contained XML text. */
  xml: string;
  element: DavElement;
}

/** A PROPPATCH body: the updates in document order. */
export function parseProppatch(root: DavElement | undefined): PropertyUpdate[] {
  if (!root || root.name !== D('propertyupdate')) throw new DavBodyError('the body of PROPPATCH must be a DAV:propertyupdate element');
  const updates: PropertyUpdate[] = [];
  for (const instruction of root.children) {
    const action = instruction.name === D('set') ? 'set' : instruction.name === D('remove') ? 'remove' : undefined;
    if (!action) continue;
    const prop = child(instruction, D('prop'));
    if (!prop) throw new DavBodyError(`DAV:${action} without DAV:prop`);
    for (const element of prop.children) {
      updates.push({ action, name: element.name, xml: action === 'set' ? standalone(element) : '', element });
    }
  }
  if (updates.length === 0) throw new DavBodyError('DAV:propertyupdate changes nothing');
  return updates;
}

export interface LockRequest {
  scope: 'exclusive' | 'shared';
  type: string;
  /** DAV:owner as a self-contained XML text; '' when none. */
  ownerXml: string;
}

/** A LOCK body (DAV:lockinfo); undefined for an empty body (a refresh). */
export function parseLockinfo(root: DavElement | undefined): LockRequest | undefined {
  if (!root) return undefined;
  if (root.name !== D('lockinfo')) throw new DavBodyError('the body of LOCK must be a DAV:lockinfo element');
  const scopeElement = child(root, D('lockscope'))?.children[0];
  const scope = scopeElement?.name === D('exclusive') ? 'exclusive' : scopeElement?.name === D('shared') ? 'shared' : undefined;
  if (!scope) throw new DavBodyError('DAV:lockinfo needs a DAV:lockscope of DAV:exclusive or DAV:shared');
  const typeElement = child(root, D('locktype'))?.children[0];
  if (!typeElement) throw new DavBodyError('DAV:lockinfo needs a DAV:locktype');
  if (typeElement.name !== D('write')) throw new DavBodyError('only DAV:write locks are supported', 422);
  const owner = child(root, D('owner'));
  return { scope, type: 'write', ownerXml: owner ? standalone(owner) : '' };
}
