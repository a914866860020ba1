import type { DatasetFilter, DatasetFilterMode } from '../../services/datasets.js';
import { ServiceError } from '../../services/errors.js';
import { el, type XmlElement } from '../../xml/element.js';
import { inSession, requiredAttr, type OperationTable } from '../engine.js';

/**
 * Spec section "Datasets". Names and access rules are the datasets service's
 * (src/services/datasets.ts): own datasets by path (`Contacts/Work`), another account's as
 * `~name[@domain]/path` (open as that account's Access Rights say: r to read, w to change).
 *
 * Entries travel as `<datasetData name="...">` whose child elements are the attributes
 * (`<email>a@b</email>`). In datasetSet an element with an empty body sets the attribute to
 * the empty string, and `<attr><null/></attr>` removes the attribute; anything else nested
 * in an attribute element is an error (attributes are flat strings).
 */

/** datasetList's filter from filterField / filter / mode. */
function listFilter(request: XmlElement): DatasetFilter | undefined {
  const { filterField, filter, mode } = request.attrs;
  if (filterField === undefined || filterField === '') {
    if (mode !== undefined) throw new ServiceError('the mode attribute needs the filterField attribute');
    if (filter !== undefined) throw new ServiceError('the filter attribute needs the filterField attribute');
    return undefined;
  }
  if (filter === undefined) throw new ServiceError('the filter attribute is missing');
  // The datasets service checks the mode.
  return { field: filterField, value: filter, mode: (mode ?? 'eq') as DatasetFilterMode };
}

/** The attribute changes of datasetSet's `datasetData` element. */
function entryChanges(data: XmlElement): { [attribute: string]: string | null } {
  const changes = Object.create(null) as { [attribute: string]: string | null };
  for (const child of data.elements()) {
    if (Object.prototype.hasOwnProperty.call(changes, child.name)) {
      throw new ServiceError(`attribute ${JSON.stringify(child.name)} is given twice`);
    }
    const nested = child.elements();
    if (nested.length === 0) changes[child.name] = child.text();
    else if (nested.length === 1 && nested[0]!.name === 'null' && child.text().trim() === '') changes[child.name] = null;
    else throw new ServiceError(`attribute ${JSON.stringify(child.name)}: the value must be text (or <null/> to remove it)`);
  }
  return changes;
}

export const datasetOperations: OperationTable = {
  datasetCreate: inSession(async (ctx) => {
    await ctx.server.datasets.create(ctx.session.account, requiredAttr(ctx.request, 'dataset'));
  }),

  datasetRemove: inSession(async (ctx) => {
    await ctx.server.datasets.remove(ctx.session.account, requiredAttr(ctx.request, 'dataset'), ctx.request.attrs.ifExists === 'yes');
  }),

  datasetAddAddress: inSession(async (ctx) => {
    const dataset = requiredAttr(ctx.request, 'dataset');
    const address = ctx.request.text().trim();
    if (address === '') throw new ServiceError('the E-mail address is missing');
    const realName = ctx.request.attrs.realName;
    await ctx.server.datasets.addAddress(ctx.session.account, dataset, address, realName === '' ? undefined : realName);
  }),

  datasetList: inSession(async (ctx) => {
    const dataset = requiredAttr(ctx.request, 'dataset');
    const entries = await ctx.server.datasets.list(ctx.session.account, dataset, listFilter(ctx.request));
    for (const entry of entries) {
      const message = el('datasetData', { name: entry.name });
      for (const key of Object.keys(entry.attrs)) message.add(key, undefined, entry.attrs[key] === '' ? undefined : entry.attrs[key]);
      ctx.send(message);
    }
  }),

  datasetListSubsets: inSession(async (ctx) => {
    // An empty name is meaningful here: the top-level datasets.
    const dataset = ctx.request.attrs.dataset;
    if (dataset === undefined) throw new ServiceError('the dataset attribute is missing');
    for (const name of await ctx.server.datasets.listSubsets(ctx.session.account, dataset)) {
      ctx.send(el('datasetSubset', { dataset: name }));
    }
  }),

  datasetSet: inSession(async (ctx) => {
    const dataset = requiredAttr(ctx.request, 'dataset');
    const data = ctx.request.elements('datasetData');
    if (data.length === 0) throw new ServiceError('the datasetData element is missing');
    if (data.length > 1 || ctx.request.elements().length > 1) throw new ServiceError('exactly one datasetData element is expected');
    const entry = data[0]!;
    const name = entry.attrs.name;
    await ctx.server.datasets.set(ctx.session.account, dataset, name === '' ? undefined : name, entryChanges(entry));
  }),

  datasetDelete: inSession(async (ctx) => {
    await ctx.server.datasets.delete(ctx.session.account, requiredAttr(ctx.request, 'dataset'), requiredAttr(ctx.request, 'name'));
  }),
};
