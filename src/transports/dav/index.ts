/** The DAV transport as the HTTP listener builds it: the core with its providers. */
import type { IncomingMessage } from 'node:http';
import type { XimssServices } from '../../ximss/services.js';
import { CalDavProvider } from './caldav.js';
import { CardDavProvider } from './carddav.js';
import { FilesProvider } from './files.js';
import { DavHandler } from './handler.js';

export { DavHandler } from './handler.js';

export function createDavHandler(services: XimssServices, secure: boolean, authenticated: (req: IncomingMessage) => void): DavHandler {
  const handler = new DavHandler(services, secure, authenticated);
  handler.register(new FilesProvider(() => services.files, services.config.defaultDomain));
  handler.register(new CardDavProvider(() => ({ mail: services.mail, contacts: services.contacts, accounts: services.accounts, davNames: services.store.davNames }), services.config.defaultDomain));
  handler.register(new CalDavProvider(() => ({ mail: services.mail, calendars: services.calendars, calendarIndex: services.store.calendarIndex, accounts: services.accounts, davNames: services.store.davNames }), services.config.defaultDomain));
  return handler;
}
