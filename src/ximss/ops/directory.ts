import { ServiceError } from '../../services/errors.js';
import { el } from '../../xml/element.js';
import { appendValue, isDictionary, readValue, type XimssValue } from '../../xml/objects.js';
import { inSession, requiredAttr, type OperationTable } from '../engine.js';

/**
 * Spec section "Directory": listDirectory (baseDN with `$` for the current domain's
 * subtree, an RFC 2254 filter, scope base/one/sub, field elements, limit, paging cookie,
 * sortField/sortOrder) answered with directoryData messages whose body is the record's
 * attributes in the XML presentation of a dictionary; modifyDirectory (the Russian text,
 * example 048) with the record's attributes as a dictionary. See src/services/directory.ts.
 */
export const directoryOperations: OperationTable = {
  listDirectory: inSession(async (ctx) => {
    const { baseDN, filter, scope, limit, cookie, sortField, sortOrder } = ctx.request.attrs;
    if (baseDN === undefined) throw new ServiceError('the baseDN attribute is missing');
    let limitNumber: number | undefined;
    if (limit !== undefined && limit !== '') {
      if (!/^\d{1,9}$/.test(limit.trim())) throw new ServiceError('limit must be a positive number');
      limitNumber = Number(limit.trim());
    }
    const others = ctx.request.elements().filter((e) => e.name !== 'field');
    if (others.length > 0) throw new ServiceError(`unexpected <${others[0]!.name}> element (field elements expected)`);
    const fields = ctx.request.elements('field').map((f) => f.text().trim()).filter((f) => f !== '');
    const page = await ctx.server.directory.list(ctx.session.account, { baseDN, filter, scope, fields, limit: limitNumber, cookie, sortField, sortOrder });
    page.records.forEach((record, i) => {
      const last = i === page.records.length - 1;
      const message = el('directoryData', last && page.cookie !== undefined ? { name: record.dn, cookie: page.cookie } : { name: record.dn });
      appendValue(message, record.attrs);
      ctx.send(message);
    });
  }),

  modifyDirectory: inSession(async (ctx) => {
    const name = requiredAttr(ctx.request, 'name');
    const newName = ctx.request.attrs.newName;
    let attrs: { [key: string]: XimssValue } | undefined;
    if (ctx.request.elements().length > 0 || ctx.request.text().trim() !== '') {
      let value: XimssValue;
      try {
        value = readValue(ctx.request);
      } catch (err) {
        throw new ServiceError(`bad record attributes: ${(err as Error).message}`);
      }
      if (!isDictionary(value)) throw new ServiceError('the record attributes must be a dictionary (subKey elements)');
      attrs = value;
    }
    await ctx.server.directory.modify(ctx.session.account, name, newName === '' ? undefined : newName, attrs);
  }),
};
