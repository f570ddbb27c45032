"""The local stack: fakes of Microsoft Entra ID and Microsoft Graph, launchers, demo client."""
