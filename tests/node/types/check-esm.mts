// The ESM view of the declarations (index.d.mts), compiled by tests/node/types.test.js.
import Anthropic from '@anthropic-ai/sdk';
import wifDefault, { Provider, WifError, ExchangeDeniedError, type AccessToken } from 'anthropic-wif';

const provider = new Provider({ profile: 'ci' });
const client = new Anthropic({ credentials: provider.credentials() });
const token: Promise<AccessToken> = provider.getToken({ forceRefresh: false });
const same: typeof Provider = wifDefault.Provider;
const isWif = (e: unknown): e is WifError => e instanceof WifError;
const denied = (e: unknown): number | null => (e instanceof ExchangeDeniedError ? e.status : null);

export { client, token, same, isWif, denied };
