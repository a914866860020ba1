/** The DAV transport as the HTTP listener builds it: the core with its providers. */
import type { IncomingMessage } from 'node:http';
import { ServiceError } from '../../services/errors.js';
import type { FileStorage } from '../../services/files/api.js';
import type { XimssServices } from '../../ximss/services.js';
import { FilesProvider } from './files.js';
import { DavHandler } from './handler.js';

export { DavHandler } from './handler.js';

export function createDavHandler(services: XimssServices, secure: boolean, authenticated: (req: IncomingMessage) => void): DavHandler {
  const handler = new DavHandler(services, secure, authenticated);
  const files = (): FileStorage => {
    const storage = (services as XimssServices & { files?: FileStorage }).files;
    if (!storage) throw new ServiceError('not implemented yet: File Storage', 501);
    return storage;
  };
  handler.register(new FilesProvider(files, services.config.defaultDomain));
  return handler;
}
