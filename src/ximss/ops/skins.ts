import { decodeText, parseBanners } from '../../services/skins.js';
import { ServiceError } from '../../services/errors.js';
import { el } from '../../xml/element.js';
import { appendValue } from '../../xml/objects.js';
import { XmlParseError, parseXml } from '../../xml/parser.js';
import { formatGmt, formatLocal, parseGmt } from '../../xml/time.js';
import { inSession, requiredAttr, type OperationTable } from '../engine.js';

/**
 * Spec section "Service Operations": the skin operations (skinList, skinFileList,
 * skinFileRead) and readConfigFile, over the skins service (src/services/skins.ts: the
 * domain's, the server's and the built-in skins); and section "Banner": bannerRead, from the
 * domain's `Banners` setting (`ximssd domain set <domain> Banners=...`).
 */

/** The skinName attribute: absent or empty is the unnamed skin. */
function skinNameOf(attrs: Record<string, string | undefined>): string {
  return attrs.skinName ?? '';
}

/** readConfigFile's timeModified: the body is sent only when the file is newer (whole seconds). */
function newerThan(modified: Date, timeModified: string | undefined): boolean {
  if (timeModified === undefined || timeModified === '') return true;
  const since = parseGmt(timeModified);
  if (!since) throw new ServiceError('timeModified must be a GMT time (YYYYMMDDTHHMMSS)');
  return Math.floor(modified.getTime() / 1000) > Math.floor(since.getTime() / 1000);
}

export const skinOperations: OperationTable = {
  skinList: inSession(async (ctx) => {
    for (const skinName of await ctx.server.skins.listSkins(ctx.session.account.domain, ctx.request.attrs.filter)) {
      ctx.send(el('skinInfo', { skinName }));
    }
  }),

  skinFileList: inSession(async (ctx) => {
    const files = await ctx.server.skins.listFiles(ctx.session.account.domain, skinNameOf(ctx.request.attrs), ctx.request.attrs.filter);
    for (const file of files) {
      ctx.send(
        el('skinFileInfo', {
          skinName: file.skinName,
          fileName: file.fileName,
          size: file.size,
          timeModified: formatLocal(file.modified, ctx.session.timeZone),
        }),
      );
    }
  }),

  skinFileRead: inSession(async (ctx) => {
    const fileName = requiredAttr(ctx.request, 'fileName');
    const type = ctx.request.attrs.type;
    if (type !== undefined && type !== '' && type !== 'binary' && type !== 'text') throw new ServiceError('type must be binary or text');
    const file = await ctx.server.skins.readFile(ctx.session.account.domain, skinNameOf(ctx.request.attrs), fileName);
    const message = el('skinFileData', { fileName: file.fileName, timeModified: formatLocal(file.modified, ctx.session.timeZone) });
    if (type === 'binary') message.add('base64', undefined, file.data.toString('base64'));
    else if (file.data.length > 0) {
      const text = decodeText(file.data);
      if (text === undefined) throw new ServiceError('the file data is not text: read it with type="binary"');
      message.append(text);
    }
    ctx.send(message);
  }),

  readConfigFile: inSession(async (ctx) => {
    const name = requiredAttr(ctx.request, 'name');
    const config = await ctx.server.skins.readConfig(ctx.session.account.domain, name);
    const message = el('configFile', { skinName: config.skinName, name, timeModified: formatGmt(config.modified) });
    if (newerThan(config.modified, ctx.request.attrs.timeModified)) {
      try {
        message.append(parseXml(config.text));
      } catch (err) {
        if (err instanceof XmlParseError) {
          ctx.server.log.child({ component: 'skins' }).warn({ event: 'skin.bad_config', name, error: err.message }, 'a configuration file is not valid XML');
          throw new ServiceError(`configuration ${name} is not valid XML`);
        }
        throw err;
      }
    }
    ctx.send(message);
  }),

  bannerRead: inSession(async (ctx) => {
    const type = requiredAttr(ctx.request, 'type');
    const domain = await ctx.server.accounts.getDomain(ctx.session.account.domain);
    const setting = domain?.settings.Banners;
    if (typeof setting !== 'string') return;
    const banners = parseBanners(setting);
    if (!banners) {
      ctx.server.log.child({ component: 'skins' }).warn({ event: 'banner.bad_setting', domain: ctx.session.account.domain }, 'the Banners setting of a domain is not valid');
      return;
    }
    const banner = banners.get(type);
    if (banner === undefined) return;
    ctx.send(appendValue(el('banner', { type }), banner));
  }),
};
